// The chat buffer's settings for the whole process, read from the environment at startup.
import Foundation
import IntegratorCore

/// How the chat buffer behaves in this process.
public struct ChatBufferOptions: Sendable {
    /// Where flushes go when no URL was set through `PUT /api/v1/chat-buffer/config` (that one wins). Default none.
    public var webhookURL: String?
    /// Whether `POST /api/message` takes no token, as the Redis Message Queue's did. Unsafe: anyone who reaches the
    /// port can make the webhook fire. Default `false` (an operator token is required).
    public var isPublic: Bool
    /// The `ttl` of a message that names none, in seconds. Default 15, as in the seed.
    public var defaultTTL: Int
    /// The `max_wait` of a buffer whose first message names none, in seconds. Default 300.
    public var defaultMaxWait: Int

    public init(webhookURL: String? = nil, isPublic: Bool = false, defaultTTL: Int = 15, defaultMaxWait: Int = 300) {
        self.webhookURL = webhookURL
        self.isPublic = isPublic
        self.defaultTTL = defaultTTL
        self.defaultMaxWait = defaultMaxWait
    }

    /// The largest `ttl` and `max_wait` accepted, in seconds (one day).
    static let longestWait = 86_400

    /// From `INTEGRATOR_CHAT_BUFFER_WEBHOOK_URL` (or the seed's `WEBHOOK_URL`) and `INTEGRATOR_CHAT_BUFFER_PUBLIC`.
    /// - Throws: ``ConfigurationError`` for a URL that is not http(s) or a flag that is not true or false. The URL is
    ///   never repeated in the message: it may carry a secret.
    public static func fromEnvironment(_ variables: [String: String] = ProcessInfo.processInfo.environment) throws -> ChatBufferOptions {
        var options = ChatBufferOptions()
        func value(_ name: String) -> String? {
            guard let text = variables[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
            return text
        }
        let urlVariable = value("INTEGRATOR_CHAT_BUFFER_WEBHOOK_URL") != nil ? "INTEGRATOR_CHAT_BUFFER_WEBHOOK_URL" : "WEBHOOK_URL"
        if let url = value(urlVariable) {
            guard WebhookURL.isValid(url) else {
                throw ConfigurationError(variable: urlVariable, expected: "an http:// or https:// URL")
            }
            options.webhookURL = url
        }
        if let flag = value("INTEGRATOR_CHAT_BUFFER_PUBLIC") {
            switch flag.lowercased() {
            case "true", "1", "yes": options.isPublic = true
            case "false", "0", "no": options.isPublic = false
            default: throw ConfigurationError(variable: "INTEGRATOR_CHAT_BUFFER_PUBLIC", expected: "true or false", got: flag)
            }
        }
        return options
    }
}

/// The one check of a webhook URL the chat buffer posts to: absolute http(s) with a host. Where it resolves is the
/// SSRF guard's question, asked when a flush is delivered.
enum WebhookURL {
    static func isValid(_ text: String) -> Bool {
        guard text.count <= 2048, let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            scheme == "http" || scheme == "https", let host = components.host, !host.isEmpty
        else { return false }
        return true
    }
}
