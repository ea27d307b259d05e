// A message as `POST /api/message` receives it, and the webhook body a flush makes of a user's messages.
import Foundation
import IntegratorCore

/// One accepted message: the fields as sent (every one, known or not, `ttl` and `max_wait` aside) and how long its
/// user's buffer may wait.
struct ChatBufferMessage: Sendable, Equatable {
    /// The buffer's key: `user` as text (a number and its digits as a string are the same chat, as in the seed).
    var userKey: String
    /// What the client sent, minus `ttl` and `max_wait`; `user` and `message` included.
    var fields: [String: JSONValue]
    var ttl: Int
    var maxWait: Int

    /// The longest `user` accepted, in characters.
    static let longestUser = 512
    /// Members that steer the buffer and are not passed on to the webhook (the seed drops `ttl` too).
    static let controlFields: Set<String> = ["ttl", "max_wait"]

    /// Reads a request body, reporting every bad field at once. Messages name fields, never their values.
    static func parse(_ body: JSONValue, options: ChatBufferOptions) throws(ValidationFailure) -> ChatBufferMessage {
        guard case .object(let members) = body else {
            throw ValidationFailure([FieldIssue(field: "body", message: "must be a JSON object, got \(body.typeName)")])
        }
        var issues: [FieldIssue] = []
        let userKey = Self.userKey(members["user"], issues: &issues)
        if members["message"] == nil || members["message"] == .null {
            issues.append(FieldIssue(field: "message", message: "is required"))
        }
        let ttl = Self.seconds("ttl", members["ttl"], default: options.defaultTTL, issues: &issues)
        let maxWait = Self.seconds("max_wait", members["max_wait"], default: options.defaultMaxWait, issues: &issues)
        guard issues.isEmpty, let userKey else { throw ValidationFailure(issues) }
        return ChatBufferMessage(
            userKey: userKey, fields: members.filter { !controlFields.contains($0.key) }, ttl: ttl, maxWait: maxWait)
    }

    /// `user` as a key: a non-empty string without control characters, or a whole number (phone numbers often are).
    private static func userKey(_ value: JSONValue?, issues: inout [FieldIssue]) -> String? {
        switch value {
        case nil, .null?:
            issues.append(FieldIssue(field: "user", message: "is required"))
        case .string(let text)?:
            if text.isEmpty {
                issues.append(FieldIssue(field: "user", message: "must not be empty"))
            } else if text.count > longestUser {
                issues.append(FieldIssue(field: "user", message: "must be at most \(longestUser) characters"))
            } else if text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                issues.append(FieldIssue(field: "user", message: "must not contain control characters"))
            } else {
                return text
            }
        case let number?:
            if let whole = number.intValue { return String(whole) }
            issues.append(FieldIssue(field: "user", message: "must be a string or a whole number, got \(number.typeName)"))
        }
        return nil
    }

    /// A whole number of seconds from 1 to one day; absent or null gives `default`.
    private static func seconds(_ field: String, _ value: JSONValue?, default fallback: Int, issues: inout [FieldIssue]) -> Int {
        guard let value, value != .null else { return fallback }
        guard let seconds = value.intValue else {
            issues.append(FieldIssue(field: field, message: "must be a whole number of seconds, got \(value.typeName)"))
            return fallback
        }
        guard (1...ChatBufferOptions.longestWait).contains(seconds) else {
            issues.append(FieldIssue(field: field, message: "must be from 1 to \(ChatBufferOptions.longestWait) seconds"))
            return fallback
        }
        return seconds
    }

    /// The seed's answer, word for word, so clients that show or match it keep working.
    var savedText: String {
        let user = fields["user"].map(Self.plainText) ?? userKey
        return "Mensagem salva para usuário \(user), expira em \(ttl) segundos"
    }

    /// A JSON value as Python's `str()` shows the common cases (the seed formats `user` that way).
    private static func plainText(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): text
        case .number: value.intValue.map(String.init) ?? value.encodedString()
        default: value.encodedString()
        }
    }
}

/// The body a flush posts, in the seed's shape: the buffer's fields (later messages win, so the latest message's
/// values are sent, and a field only an earlier message carried is kept), `user_id` equal to `user`, every `message`
/// in arrival order, and `processed_at`.
enum ChatBufferWebhookBody {
    static func make(_ messages: [[String: JSONValue]], processedAt: Date) -> JSONValue {
        var body: [String: JSONValue] = [:]
        var texts: [JSONValue] = []
        texts.reserveCapacity(messages.count)
        for fields in messages {
            body.merge(fields) { _, later in later }
            texts.append(fields["message"] ?? .null)
        }
        body["message"] = nil
        body["user_id"] = body["user"] ?? .null
        body["messages"] = .array(texts)
        body["processed_at"] = .string(processedTime(processedAt))
        return .object(body)
    }

    /// `2025-01-30T01:19:45.123456`: UTC without an offset, as the seed's `datetime.now().isoformat()` writes in a
    /// container on UTC, so receivers that parse it keep working.
    static func processedTime(_ date: Date) -> String {
        let totalMicroseconds = Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
        let seconds = Int(totalMicroseconds.floorDivided(by: 1_000_000))
        let microseconds = Int(totalMicroseconds - Int64(seconds) * 1_000_000)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents(
            [.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        func padded(_ value: Int?, _ width: Int) -> String {
            let text = String(value ?? 0)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(padded(parts.year, 4))-\(padded(parts.month, 2))-\(padded(parts.day, 2))T"
            + "\(padded(parts.hour, 2)):\(padded(parts.minute, 2)):\(padded(parts.second, 2)).\(padded(microseconds, 6))"
    }
}

extension Int64 {
    /// Division rounding toward negative infinity (dates before 1970 stay in the right second).
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}
