using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;

namespace Pearl2.Formats.Update;

/// <summary>A firmware version "MAJOR.MINOR.PATCH" (numbers only), ordered numerically.</summary>
public readonly record struct FirmwareVersion(int Major, int Minor, int Patch) : IComparable<FirmwareVersion>
{
    public static bool TryParse(string? s, out FirmwareVersion version)
    {
        version = default;
        var parts = s?.Split('.');
        if (parts is not { Length: 3 }) return false;
        var n = new int[3];
        for (int i = 0; i < 3; i++)
        {
            // Digits only: no signs, spaces or leading zeros ("01" would sort like "1" but read like a different release).
            if (parts[i].Length is 0 or > 9 || !parts[i].All(char.IsAsciiDigit) || (parts[i].Length > 1 && parts[i][0] == '0')) return false;
            n[i] = int.Parse(parts[i], CultureInfo.InvariantCulture);
        }
        version = new FirmwareVersion(n[0], n[1], n[2]);
        return true;
    }

    public int CompareTo(FirmwareVersion o) => Major != o.Major ? Major.CompareTo(o.Major) : Minor != o.Minor ? Minor.CompareTo(o.Minor) : Patch.CompareTo(o.Patch);
    public static bool operator >(FirmwareVersion a, FirmwareVersion b) => a.CompareTo(b) > 0;
    public static bool operator <(FirmwareVersion a, FirmwareVersion b) => a.CompareTo(b) < 0;
    public override string ToString() => $"{Major}.{Minor}.{Patch}";
}

public sealed class ManifestException(string message) : Exception(message);

/// <summary>
/// The update server's manifest for one board, <c>&lt;base&gt;/&lt;board&gt;/manifest.json</c>:
/// <code>{ "version": "0.2.0", "board": "qemu-virt", "size": 786432000, "sha256": "…64 hex…",
///   "payload": "pearl2-qemu-virt-0.2.0.chunks", "index": "pearl2-qemu-virt-0.2.0.index", "indexSha256": "…64 hex…",
///   "notes": "…" }</code>
/// <c>size</c> and <c>sha256</c> are the slot image's; it travels as the chunks of <c>payload</c>, described by
/// <c>index</c> (<see cref="ChunkIndex"/>). Both URLs are resolved against the manifest's. Beside it,
/// <c>manifest.json.sig</c> holds an ECDSA P-256 signature (SHA-256, DER, as <c>openssl dgst -sha256 -sign</c> writes
/// it) over the manifest's exact bytes; the index is covered by its signed SHA-256, each chunk by its hash in the
/// index, and the written slot by the signed SHA-256.
/// </summary>
public sealed record UpdateManifest(FirmwareVersion Version, string Board, Uri Payload, Uri Index, byte[] IndexSha256, long Size, byte[] Sha256, string Notes)
{
    public const int MaxBytes = 64 * 1024;

    /// <summary>Parses a manifest fetched from <paramref name="manifestUrl"/>; every refusal names the field.</summary>
    public static UpdateManifest Parse(ReadOnlySpan<byte> json, Uri manifestUrl)
    {
        if (json.Length > MaxBytes) throw new ManifestException($"manifest: {json.Length} bytes is more than {MaxBytes}");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 4 }); }
        catch (JsonException e) { throw new ManifestException($"manifest: not JSON ({e.Message})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new ManifestException("manifest: not a JSON object");
            string Str(string name, bool required = true)
            {
                if (!root.TryGetProperty(name, out var v)) return required ? throw new ManifestException($"manifest.{name}: missing") : "";
                return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new ManifestException($"manifest.{name}: not a string");
            }
            var versionText = Str("version");
            if (!FirmwareVersion.TryParse(versionText, out var version)) throw new ManifestException($"manifest.version: '{versionText}' is not MAJOR.MINOR.PATCH");
            var board = Str("board");
            if (board.Length is 0 or > 64) throw new ManifestException("manifest.board: empty or too long");
            Uri Url(string name)
            {
                var text = Str(name);
                return Uri.TryCreate(manifestUrl, text, out var url) && url.Scheme is "http" or "https" ? url
                    : throw new ManifestException($"manifest.{name}: '{text}' is not an http(s) URL");
            }
            byte[] Sha(string name)
            {
                var text = Str(name);
                return text.Length == 64 && text.All(char.IsAsciiHexDigitLower) ? Convert.FromHexString(text)
                    : throw new ManifestException($"manifest.{name}: not 64 lower-case hex digits");
            }
            var payload = Url("payload");
            var index = Url("index");
            if (!root.TryGetProperty("size", out var sizeElement) || sizeElement.ValueKind != JsonValueKind.Number || !sizeElement.TryGetInt64(out long size) || size <= 0)
                throw new ManifestException("manifest.size: missing or not a positive whole number of bytes");
            return new UpdateManifest(version, board, payload, index, Sha("indexSha256"), size, Sha("sha256"), Str("notes", required: false));
        }
    }

    /// <summary>Whether <paramref name="signatureDer"/> is the key's ECDSA P-256/SHA-256 signature of exactly these bytes.</summary>
    public static bool SignatureIsValid(ReadOnlySpan<byte> manifest, ReadOnlySpan<byte> signatureDer, ECDsa publicKey)
    {
        if (publicKey.KeySize != 256) return false;
        try { return publicKey.VerifyData(manifest, signatureDer, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence); }
        catch (CryptographicException) { return false; }
    }

    /// <summary>
    /// Why this device must not install the update, or null when it may: another board's image, a version not
    /// newer than the running one (no downgrades, no reinstall), or one that already failed its health check here.
    /// </summary>
    public string? RefusalFor(string board, FirmwareVersion running, IReadOnlyCollection<FirmwareVersion> bad)
    {
        if (Board != board) return $"the image is for board '{Board}', this is '{board}'";
        if (!(Version > running)) return $"version {Version} is not newer than the running {running}";
        if (bad.Contains(Version)) return $"version {Version} failed its health check on this device before";
        return null;
    }
}
