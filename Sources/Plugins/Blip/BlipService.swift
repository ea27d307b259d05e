// The BLiP use cases behind the API: creating notifications (one or many, idempotent by external id), reading them,
// and BLiP's message notifications moving their status forward.
import Foundation
import IntegratorCore
import SQLKit

public struct BlipService: Sendable {
    /// The most notifications one bulk request takes.
    public static let maxBulk = 1000
    /// WhatsApp templates take a handful of body parameters; more is a mistake in the caller's data.
    public static let maxParameters = 20

    let environment: PluginEnvironment
    let store = BlipStore()

    public init(environment: PluginEnvironment) {
        self.environment = environment
    }

    /// What a create did: the notification, and whether it existed before under its `external_id`.
    public struct Created: Sendable {
        public var notification: JSONValue
        public var duplicate: Bool
    }

    // MARK: Creating

    /// Validates and stores one notification; a repeated `external_id` answers with the first one.
    public func create(_ body: JSONValue) async throws -> Created {
        let input = try await validated([body], paths: [""])
        return try await store(input)[0]
    }

    /// Stores many notifications in one transaction: all, or none when any is invalid.
    public func create(contentsOf bodies: [JSONValue]) async throws -> [Created] {
        guard (1...Self.maxBulk).contains(bodies.count) else {
            throw ValidationFailure([FieldIssue(field: "notifications", message: "must hold 1 to \(Self.maxBulk) notifications")])
        }
        let input = try await validated(bodies, paths: bodies.indices.map { "notifications.\($0)" })
        return try await store(input)
    }

    private struct Input: Sendable {
        var phone: String
        var template: BlipAPI.Template
        var integrationID: String?
        var externalID: String?
    }

    private func validated(_ bodies: [JSONValue], paths: [String]) async throws -> [Input] {
        var inputs: [Input] = []
        var issues: [FieldIssue] = []
        var integrations: [String: Bool] = [:]
        for (body, path) in zip(bodies, paths) {
            var input: InputObject
            do {
                input = try InputObject(body, path: path)
            } catch {
                issues += error.issues
                continue
            }
            let phoneText = input.string("phone", required: true, length: 1...40)
            let template = input.string("template", required: true, length: 1...512)
            let namespace = input.string("namespace", required: true, length: 1...200)
            let language = input.string("language", length: 2...20) ?? "pt_BR"
            let parameters = Self.parameters(input.raw("parameters"), into: &input)
            let integrationID = input.string("integration", length: 1...100)
            let externalID = input.string("external_id", length: 1...200)
            var phone: String?
            if let phoneText {
                switch BlipPhone.normalize(phoneText) {
                case .success(let normalized): phone = normalized
                case .failure(let problem): input.addIssue("phone", problem.description)
                }
            }
            if let integrationID {
                if integrations[integrationID] == nil {
                    let found = Identifier.isWellFormed(integrationID) ? try? await environment.integrations.get(id: integrationID) : nil
                    integrations[integrationID] = found?.provider == BlipNotificationsProvider.providerID
                }
                if integrations[integrationID] != true {
                    input.addIssue("integration", "no \(BlipNotificationsProvider.providerID) integration with id \(integrationID)")
                }
            }
            do { try input.finish() } catch { issues += error.issues }
            guard let phone, let template, let namespace, let parameters else { continue }
            inputs.append(
                Input(
                    phone: phone, template: BlipAPI.Template(namespace: namespace, name: template, language: language, parameters: parameters),
                    integrationID: integrationID, externalID: externalID))
        }
        guard issues.isEmpty else { throw ValidationFailure(issues) }
        return inputs
    }

    private static func parameters(_ value: JSONValue?, into input: inout InputObject) -> [String]? {
        guard let value, value != .null else { return [] }
        guard let items = value.arrayValue else {
            input.addIssue("parameters", "must be an array of strings, got \(value.typeName)")
            return nil
        }
        guard items.count <= maxParameters else {
            input.addIssue("parameters", "must have at most \(maxParameters) items, got \(items.count)")
            return nil
        }
        var texts: [String] = []
        for (index, item) in items.enumerated() {
            guard let text = item.stringValue, text.count <= 1024 else {
                input.addIssue("parameters.\(index)", "must be a string of at most 1024 characters")
                return nil
            }
            texts.append(text)
        }
        return texts
    }

    private func store(_ inputs: [Input]) async throws -> [Created] {
        do {
            return try await insert(inputs)
        } catch let error where inputs.contains(where: { $0.externalID != nil }) && !(error is ServiceError) {
            // Two creates with one external id at once: the loser's insert broke the unique index and rolled back
            // whole; trying again answers with the winner's notification.
            return try await insert(inputs)
        }
    }

    private func insert(_ inputs: [Input]) async throws -> [Created] {
        let now = environment.clock.now()
        let store = self.store
        return try await environment.transaction { transaction in
            let existing = try await store.notifications(externalIDs: inputs.compactMap(\.externalID), transaction.sql)
            var made: [String: BlipNotification] = [:]
            var new: [BlipNotification] = []
            var results: [Created] = []
            for input in inputs {
                if let key = input.externalID, let first = existing[key] ?? made[key] {
                    results.append(Created(notification: first.json, duplicate: true))
                    continue
                }
                let notification = BlipNotification(
                    id: Identifier.make(now: now), integrationID: input.integrationID, externalID: input.externalID, phone: input.phone,
                    template: input.template, status: .pending, messageID: UUID().uuidString.lowercased(), attempts: 0,
                    nextAttemptAt: now, createdAt: now, updatedAt: now)
                new.append(notification)
                if let key = input.externalID { made[key] = notification }
                results.append(Created(notification: notification.json, duplicate: false))
            }
            try await store.insert(new, transaction.sql)
            return results
        }
    }

    // MARK: Reading

    public func notification(_ id: String) async throws -> JSONValue {
        let store = self.store
        guard let found = try await environment.database.withSQL({ try await store.notification(id, $0) }) else {
            throw ServiceError(.notFound, "no notification '\(id)'")
        }
        return found.json
    }

    /// Notifications in creation order, filtered by status and phone (normalised like a new notification's).
    public func notifications(status: String?, phone: String?, page: PageRequest) async throws -> Page<JSONValue> {
        var issues: [FieldIssue] = []
        var wanted: BlipStatus?
        if let status {
            wanted = BlipStatus(rawValue: status)
            if wanted == nil {
                issues.append(FieldIssue(field: "status", message: "must be one of \(BlipStatus.allCases.map(\.rawValue).joined(separator: ", "))"))
            }
        }
        var normalized: String?
        if let phone {
            switch BlipPhone.normalize(phone) {
            case .success(let text): normalized = text
            case .failure(let problem): issues.append(FieldIssue(field: "phone", message: problem.description))
            }
        }
        guard issues.isEmpty else { throw ValidationFailure(issues) }
        let store = self.store
        let (status, phone) = (wanted, normalized)
        let rows = try await environment.database.withSQL { sql in
            try await store.list(status: status, phone: phone, after: page.after, limit: page.limit + 1, sql)
        }
        return Page(overfetched: rows, limit: page.limit, key: \.id).map(\.json)
    }

    // MARK: Status callbacks

    /// The events BLiP sends about a message.
    static let events: Set<String> = ["accepted", "dispatched", "received", "consumed", "failed"]

    /// Applies a BLiP message notification `{"id", "event", "reason"?}` after checking `secret` against the status
    /// secret of the `blip` credentials `credentialsID`. Answers the notification's status, or `null` when the message
    /// is not one the plugin sent (BLiP reports the bot's other messages too).
    public func receiveStatus(_ body: JSONValue, credentialsID: String?, secret: String?) async throws -> JSONValue {
        try await authenticate(credentialsID: credentialsID, secret: secret)
        var input = try InputObject(body)
        let messageID = input.string("id", required: true, length: 1...200)
        let event = input.string("event", required: true, length: 1...50)
        let reason = input.raw("reason")
        for ignored in ["from", "to", "pp", "metadata", "type"] { _ = input.raw(ignored) }
        if let event, !Self.events.contains(event) {
            input.addIssue("event", "must be one of \(Self.events.sorted().joined(separator: ", "))")
        }
        try input.finish()
        guard let messageID, let event else { throw ValidationFailure(input.issues) }
        let reasonText = reason.flatMap { $0.objectValue != nil ? "BLiP reported the message failed (\(BlipAPI.reason(["reason": $0])))" : nil }
        let now = environment.clock.now()
        let store = self.store
        let status = try await environment.database.withSQL { sql in
            try await store.apply(event: event, reason: reasonText, messageID: messageID, at: now, sql)
        }
        return ["message_id": .string(messageID), "event": .string(event), "status": status.map { .string($0.rawValue) } ?? .null]
    }

    private func authenticate(credentialsID: String?, secret: String?) async throws {
        let refused = APIError(.unauthorized, code: "unauthorized", message: "a status callback needs ?credentials= and the credentials' status secret")
        guard let credentialsID, let secret, !secret.isEmpty, Identifier.isWellFormed(credentialsID) else { throw refused }
        guard let credentials = try? await environment.credentials.decrypted(id: credentialsID), credentials.typeID == "blip",
            let expected = credentials.secret("status_secret")?.reveal(), Self.constantTimeEquals(expected, secret)
        else { throw refused }
    }

    /// Compares without stopping at the first difference, so response times say nothing about the secret.
    static func constantTimeEquals(_ left: String, _ right: String) -> Bool {
        let a = Array(left.utf8)
        let b = Array(right.utf8)
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for index in 0..<max(a.count, b.count) {
            difference |= (index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0)
        }
        return difference == 0
    }
}
