// Turning a request's target, base URL and query into the URL that is sent, and the redacted form errors show.
import Foundation
import Synchronization

/// A checked http(s) URL, split into the parts the client needs.
struct OutboundURL: Sendable, Equatable {
    var scheme: String
    /// Lower case; IPv6 literals without brackets.
    var host: String
    var port: Int?
    /// Percent-encoded, starting with `/`.
    var path: String
    /// Percent-encoded, without `?`; may be empty.
    var query: String

    /// Parses an absolute URL.
    /// - Throws: ``OutboundError`` with code `invalidURL`; the message shows the URL without its query.
    init(parsing text: String) throws {
        if let known = Self.parsed.withLock({ $0[text] }) {
            self = known
            return
        }
        try self.init(components: text)
        let url = self
        Self.parsed.withLock { parsed in
            if parsed.count >= Self.parsedCapacity { parsed.removeAll(keepingCapacity: true) }
            parsed[text] = url
        }
    }

    /// URLs parsed lately, by their text. Webhook deliveries send to a few URLs again and again, and `URLComponents`
    /// took about 2 % of a delivery's CPU. Emptied when full; only URLs that parsed are kept.
    private static let parsed = Mutex<[String: OutboundURL]>([:])
    private static let parsedCapacity = 1024

    private init(components text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw OutboundError(.invalidURL, detail: "'\(Self.redact(text))' is not a valid URL")
        }
        guard scheme == "http" || scheme == "https" else {
            throw OutboundError(.invalidURL, detail: "'\(Self.redact(text))' is not an http or https URL")
        }
        guard components.user == nil, components.password == nil else {
            throw OutboundError(.invalidURL, detail: "URLs must not carry user names or passwords; use credentials")
        }
        var host = (components.host ?? "").lowercased()
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else {
            throw OutboundError(.invalidURL, detail: "'\(Self.redact(text))' has no host")
        }
        self.scheme = scheme
        self.host = host
        self.port = components.port
        let path = components.percentEncodedPath
        self.path = path.isEmpty ? "/" : path
        self.query = components.percentEncodedQuery ?? ""
    }

    /// `target` under `base` (paths are appended to the base path, as API docs write them), or `target` itself when
    /// it is absolute; then `items` added to the query.
    init(target: String, base: String?, items: [URLQueryItem]) throws {
        let head = target.prefix(8).lowercased()
        if head.hasPrefix("http://") || head.hasPrefix("https://") {
            try self.init(parsing: target)
        } else {
            guard let base else {
                throw OutboundError(.invalidURL, detail: "'\(Self.redact(target))' is relative and the client has no base URL")
            }
            var url = try OutboundURL(parsing: base)
            let (targetPath, targetQuery) = Self.split(target)
            let basePath = url.path.hasSuffix("/") ? String(url.path.dropLast()) : url.path
            url.path = targetPath.isEmpty ? url.path : basePath + (targetPath.hasPrefix("/") ? "" : "/") + targetPath
            url.query = [url.query, targetQuery].filter { !$0.isEmpty }.joined(separator: "&")
            self = url
        }
        let encoded = items.map { Self.encode($0.name) + ($0.value.map { "=" + Self.encode($0) } ?? "") }
        if !encoded.isEmpty {
            query = ([query].filter { !$0.isEmpty } + encoded).joined(separator: "&")
        }
    }

    /// Scheme, host and port: requests to another origin do not get the client's credentials.
    var origin: String {
        "\(scheme)://\(hostForURL)\(port.map { ":\($0)" } ?? "")"
    }

    /// The URL as sent.
    var absoluteString: String {
        origin + requestTarget
    }

    /// Path and query, as the request line carries them.
    var requestTarget: String {
        path + (query.isEmpty ? "" : "?" + query)
    }

    /// The `Host` header: host and port, the port left out when it is the scheme's default.
    var hostHeader: String {
        port.map { $0 == defaultPort ? hostForURL : "\(hostForURL):\($0)" } ?? hostForURL
    }

    /// The URL as errors, logs and stored run errors show it: scheme, host and port only. Paths carry secrets too
    /// (webhook URLs hold tokens in them), so they are left out along with the query.
    var redacted: String { origin }

    var defaultPort: Int { scheme == "https" ? 443 : 80 }

    private var hostForURL: String { host.contains(Character(":")) ? "[\(host)]" : host }

    private static func split(_ target: String) -> (path: String, query: String) {
        guard let mark = target.firstIndex(of: "?") else { return (target, "") }
        return (String(target[..<mark]), String(target[target.index(after: mark)...]))
    }

    /// Scheme, host and port of a URL that failed to parse: no path, query or user info.
    static func redact(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://") else { return "(a URL that is not absolute)" }
        var authority = text[schemeEnd.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        return String((text[..<schemeEnd.upperBound] + authority).prefix(200))
    }

    /// RFC 3986 unreserved characters stay; everything else is percent-encoded (so `+`, `&`, `=` survive).
    private static func encode(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics.intersection(CharacterSet(charactersIn: Unicode.Scalar(0)..<Unicode.Scalar(128)))
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// Reads `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
public enum RetryAfter {
    /// Seconds to wait from `now`, or `nil` when the header is absent or malformed. Dates in the past give 0.
    public static func seconds(from value: String?, now: Date) -> TimeInterval? {
        guard let value = value?.split(separator: " ").joined(separator: " "), !value.isEmpty else { return nil }
        if value.allSatisfy(\.isASCII), value.allSatisfy(\.isNumber) {
            return TimeInterval(value)
        }
        // IMF-fixdate, then the two obsolete forms recipients must still accept.
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = format
            if let date = formatter.date(from: value) { return max(0, date.timeIntervalSince(now)) }
        }
        return nil
    }
}
