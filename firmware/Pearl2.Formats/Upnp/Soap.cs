using System.Globalization;
using System.Text;
using System.Xml;

namespace Pearl2.Formats.Upnp;

/// <summary>
/// A UPnP control request (UDA 1.1 §3.2.1): a SOAP 1.1 envelope whose body holds one element, the action, in the
/// service's namespace, with one child per argument. The SOAPACTION header names the same service and action.
/// </summary>
public sealed record SoapAction(string ServiceType, string Name, IReadOnlyDictionary<string, string> Arguments)
{
    public const int MaxBytes = 64 * 1024;
    const string EnvelopeNs = "http://schemas.xmlsoap.org/soap/envelope/";
    static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    public string? this[string argument] => Arguments.TryGetValue(argument, out var v) ? v : null;

    /// <summary>
    /// Parses the body (DTDs, entities from outside and documents over 64 KiB refused) and checks it against the
    /// SOAPACTION header ("urn:…:service:X:1#Action", quotes optional). False with the reason on anything else.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> body, string? soapActionHeader, out SoapAction? action, out string? error)
    {
        action = null;
        if (body.Length > MaxBytes) { error = $"body larger than {MaxBytes} bytes"; return false; }
        if (soapActionHeader is null) { error = "no SOAPACTION header"; return false; }
        string header = soapActionHeader.Trim().Trim('"');
        int hash = header.LastIndexOf('#');
        if (hash <= 0 || hash == header.Length - 1) { error = $"SOAPACTION '{soapActionHeader}' is not \"service-type#action\""; return false; }
        var settings = new XmlReaderSettings
        {
            DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null, MaxCharactersInDocument = MaxBytes,
            IgnoreComments = true, IgnoreProcessingInstructions = true, IgnoreWhitespace = true,
        };
        try
        {
            // UPnP control bodies are UTF-8 (UDA 1.1 §3.2.1): decoded strictly here, so that the reader never switches
            // encodings on a declaration's say (its code for that fails on truncated declarations).
            string text;
            try { text = StrictUtf8.GetString(body.StartsWith("\uFEFF"u8) ? body[3..] : body); }
            catch (DecoderFallbackException) { error = "the body is not UTF-8"; return false; }
            using var reader = XmlReader.Create(new StringReader(text), settings);
            reader.MoveToContent();
            if (reader.LocalName != "Envelope" || reader.NamespaceURI != EnvelopeNs) { error = "the root is not a SOAP 1.1 Envelope"; return false; }
            // To the Body, skipping a Header if there is one.
            if (!reader.ReadToDescendant("Body", EnvelopeNs)) { error = "no SOAP Body"; return false; }
            if (!reader.Read() || reader.NodeType != XmlNodeType.Element) { error = "the Body holds no action"; return false; }
            string name = reader.LocalName, ns = reader.NamespaceURI;
            if (ns != header[..hash] || name != header[(hash + 1)..])
            {
                error = $"the body's action {ns}#{name} is not the SOAPACTION header's {header}";
                return false;
            }
            var args = new Dictionary<string, string>(StringComparer.Ordinal);
            if (!reader.IsEmptyElement)
            {
                int depth = reader.Depth;
                reader.Read();
                while (reader.Depth > depth && !reader.EOF)
                {
                    if (reader.NodeType == XmlNodeType.Element)
                    {
                        string arg = reader.LocalName;
                        if (args.Count >= 32) { error = "more than 32 arguments"; return false; }
                        // ReadElementContentAsString moves past the element; nested markup in an argument is refused.
                        args[arg] = reader.ReadElementContentAsString();
                    }
                    else reader.Read();
                }
            }
            action = new SoapAction(ns, name, args);
            error = null;
            return true;
        }
        catch (XmlException e) { error = "malformed XML: " + e.Message; return false; }
        catch (ArgumentException e) { error = "malformed XML: " + e.Message; return false; }
    }

    /// <summary>The answer to an action: its out arguments in order (values escaped here).</summary>
    public static string Response(string serviceType, string action, params (string Name, string Value)[] outArgs)
    {
        var sb = new StringBuilder(256 + outArgs.Sum(a => a.Value.Length + 2 * a.Name.Length + 5));
        sb.Append("<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<s:Envelope xmlns:s=\"").Append(EnvelopeNs)
          .Append("\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:").Append(action).Append("Response xmlns:u=\"")
          .Append(serviceType).Append("\">");
        foreach (var (n, v) in outArgs) sb.Append('<').Append(n).Append('>').Append(Xml.Escape(v)).Append("</").Append(n).Append('>');
        sb.Append("</u:").Append(action).Append("Response></s:Body></s:Envelope>\r\n");
        return sb.ToString();
    }

    /// <summary>A UPnP error (UDA 1.1 §3.2.2): sent with HTTP 500.</summary>
    public static string Fault(int code, string description) =>
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<s:Envelope xmlns:s=\"" + EnvelopeNs + "\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>" +
        "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\">" +
        "<errorCode>" + code.ToString(CultureInfo.InvariantCulture) + "</errorCode><errorDescription>" + Xml.Escape(description) +
        "</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n";
}

/// <summary>UPnP error codes (UDA 1.1 §3.2.2, ContentDirectory:1 §2.6).</summary>
public static class UpnpError
{
    public const int InvalidAction = 401, InvalidArgs = 402, ActionFailed = 501, ArgumentValueOutOfRange = 601;
    public const int NoSuchObject = 701, UnsupportedSortCriteria = 709, NoSuchContainer = 710, InvalidConnectionReference = 706;
}

public static class Xml
{
    /// <summary>Text for element content or an attribute value in double quotes; control characters XML cannot carry are dropped.</summary>
    public static string Escape(string s)
    {
        int i = 0;
        while (i < s.Length && s[i] is not ('<' or '>' or '&' or '"' or '\'') && (s[i] >= 0x20 || s[i] is '\t' or '\n' or '\r')) i++;
        if (i == s.Length) return s;
        var sb = new StringBuilder(s.Length + 16).Append(s, 0, i);
        for (; i < s.Length; i++)
        {
            char c = s[i];
            switch (c)
            {
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '&': sb.Append("&amp;"); break;
                case '"': sb.Append("&quot;"); break;
                case '\'': sb.Append("&apos;"); break;
                default: if (c >= 0x20 || c is '\t' or '\n' or '\r') sb.Append(c); break;
            }
        }
        return sb.ToString();
    }
}
