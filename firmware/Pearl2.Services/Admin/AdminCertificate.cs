using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;

namespace Pearl2.Services.Admin;

/// <summary>
/// The HTTPS certificate of the admin panel, kept on the data partition as <c>admin-cert.pem</c> and
/// <c>admin-key.pem</c> (0600). At the first start it is made self-signed (ECDSA P-256, 5 years) for the host name,
/// <c>&lt;host&gt;.local</c>, <c>localhost</c> and the device's addresses; later starts reuse it. An uploaded
/// certificate replaces it at once: HTTPS picks the current one for every new connection.
/// </summary>
public sealed class AdminCertificate
{
    readonly string _certPath, _keyPath;
    readonly ILogger _log;
    X509Certificate2 _current;

    public AdminCertificate(string dataDir, string hostName, IEnumerable<IPAddress> addresses, ILogger log)
    {
        _certPath = Path.Combine(dataDir, "admin-cert.pem");
        _keyPath = Path.Combine(dataDir, "admin-key.pem");
        _log = log;
        if (File.Exists(_certPath) && File.Exists(_keyPath))
        {
            try
            {
                _current = Load(File.ReadAllText(_certPath), File.ReadAllText(_keyPath));
                _log.LogInformation("admin.certificate source=kept subject=\"{Subject}\" sha256={Fingerprint} expires={Expires:yyyy-MM-dd}", _current.Subject, Fingerprint, _current.NotAfter);
                return;
            }
            catch (CryptographicException e) { _log.LogError("admin.certificate_unreadable path={Path} error=\"{Error}\" effect=\"a new self-signed one is made\"", _certPath, e.Message); }
        }
        _current = SelfSigned(hostName, addresses);
        Save(_current.ExportCertificatePem(), ExportKey(_current));
        _log.LogInformation("admin.certificate source=self-signed subject=\"{Subject}\" sha256={Fingerprint} expires={Expires:yyyy-MM-dd}", _current.Subject, Fingerprint, _current.NotAfter);
    }

    public X509Certificate2 Current => Volatile.Read(ref _current);
    public string Fingerprint => Convert.ToHexStringLower(SHA256.HashData(Current.RawData));
    public string CertificatePath => _certPath;

    static X509Certificate2 Load(string certPem, string keyPem)
    {
        // Through PKCS#12 once, so the key is one TLS can use on every platform.
        using var pem = X509Certificate2.CreateFromPem(certPem, keyPem);
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    static string ExportKey(X509Certificate2 cert) =>
        cert.GetECDsaPrivateKey()?.ExportPkcs8PrivateKeyPem() ?? cert.GetRSAPrivateKey()?.ExportPkcs8PrivateKeyPem()
        ?? throw new CryptographicException("the certificate has no private key");

    static X509Certificate2 SelfSigned(string hostName, IEnumerable<IPAddress> addresses)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={hostName}, O=Pearl2 device", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(hostName);
        san.AddDnsName(hostName + ".local");
        san.AddDnsName("localhost");
        foreach (var a in addresses.Append(IPAddress.Loopback).Append(IPAddress.IPv6Loopback).Distinct()) san.AddIpAddress(a);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        using var made = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(5));
        return X509CertificateLoader.LoadPkcs12(made.Export(X509ContentType.Pkcs12), null);
    }

    void Save(string certPem, string keyPem)
    {
        Update.DurableFile.Write(_keyPath + ".new", System.Text.Encoding.ASCII.GetBytes(keyPem));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(_keyPath + ".new", UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(_keyPath + ".new", _keyPath, overwrite: true);
        Update.DurableFile.Write(_certPath, System.Text.Encoding.ASCII.GetBytes(certPem));
    }

    /// <summary>Replaces the certificate with an uploaded one (PEM certificate chain and private key); the reason when refused.</summary>
    public string? Replace(string certPem, string keyPem)
    {
        X509Certificate2 next;
        try { next = Load(certPem, keyPem); }
        catch (Exception e) when (e is CryptographicException or ArgumentException) { return $"not a PEM certificate with its private key ({e.Message})"; }
        if (next.NotAfter < DateTime.UtcNow) return $"the certificate expired on {next.NotAfter:yyyy-MM-dd}";
        Save(certPem, keyPem);
        Volatile.Write(ref _current, next);
        _log.LogWarning("admin.certificate source=uploaded subject=\"{Subject}\" sha256={Fingerprint} expires={Expires:yyyy-MM-dd}", next.Subject, Fingerprint, next.NotAfter);
        return null;
    }
}
