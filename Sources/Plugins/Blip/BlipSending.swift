// Sending one chunk of claimed notifications: each phone's WhatsApp account (cached), then the template message, many
// at once, each notification ending on its own (sent, failed for good, or due again later).
import Foundation
import IntegratorCore
import Logging

/// How a run sends; from the integration's config.
public struct BlipSendSettings: Sendable {
    /// Notifications one run takes at most.
    public var batchSize: Int
    /// Requests in flight at once.
    public var concurrency: Int
    /// How long a looked-up WhatsApp account is trusted.
    public var identityTTL: TimeInterval
    /// Sends a notification gets before a passing problem (429, 5xx, timeouts) fails it for good.
    public var maxAttempts: Int
    /// How long a claimed notification stays with the run that claimed it; after that a later run may take it.
    public var lease: TimeInterval

    public init(batchSize: Int = 500, concurrency: Int = 32, identityTTL: TimeInterval = 7 * 86_400, maxAttempts: Int = 8, lease: TimeInterval = 600) {
        self.batchSize = batchSize
        self.concurrency = concurrency
        self.identityTTL = identityTTL
        self.maxAttempts = maxAttempts
        self.lease = lease
    }

    /// Seconds before try `attempts + 1` after a passing failure: what BLiP asked for, else 30 s doubling up to an hour.
    func delay(afterAttempt attempts: Int, retryAfter: Double?) -> TimeInterval {
        if let retryAfter { return min(max(retryAfter, 1), 3600) }
        return min(30 * pow(2, Double(max(attempts - 1, 0))), 3600)
    }
}

/// What one run did.
public struct BlipRunSummary: Sendable, Equatable {
    public var claimed = 0
    public var sent = 0
    public var failed = 0
    public var retrying = 0
    public var lookups = 0

    mutating func add(_ other: BlipRunSummary) {
        claimed += other.claimed
        sent += other.sent
        failed += other.failed
        retrying += other.retrying
        lookups += other.lookups
    }

    var metadata: Logger.Metadata {
        [
            "blip.claimed": "\(claimed)", "blip.sent": "\(sent)", "blip.failed": "\(failed)", "blip.retrying": "\(retrying)",
            "blip.lookups": "\(lookups)",
        ]
    }
}

/// Sending one chunk of claimed notifications for the run's credentials.
extension BlipRun {
    /// The outcome of each notification, the accounts looked up on the way, and whether BLiP refused the key.
    struct Sent: Sendable {
        var outcomes: [BlipOutcome] = []
        var summary = BlipRunSummary()
        var keyRefused: String?
    }

    func send(_ notifications: [BlipNotification]) async throws -> Sent {
        let now = environment.clock.now()
        let store = BlipStore()
        var result = Sent()
        var outcomes: [String: BlipOutcome.Kind] = [:]
        var ready: [BlipNotification] = []
        for notification in notifications {
            switch BlipPhone.normalize(notification.phone) {
            case .success(let phone):
                var copy = notification
                copy.phone = phone
                ready.append(copy)
            case .failure(let problem):
                outcomes[notification.id] = .failed(problem.description)
            }
        }
        // One task per phone: its lookup (unless cached), then its messages. No step waits for a whole chunk's
        // lookups, and a phone is looked up once however many notifications it has.
        let byPhone = Dictionary(grouping: ready, by: \.phone).map { (phone: $0.key, notifications: $0.value) }
        let cached = try await environment.database.withSQL { sql in
            try await store.accounts(
                credentialsID: credentialsID, phones: byPhone.map(\.phone), since: now.addingTimeInterval(-settings.identityTTL), sql)
        }
        let answers = await concurrently(byPhone) { group -> PhoneResult in
            var result = PhoneResult()
            let account: String
            if let known = cached[group.phone] {
                account = known
            } else {
                switch await Self.attempt({ try await api.whatsAppAccount(for: group.phone) }, what: "the account lookup") {
                case .success(.success(let found)):
                    account = found
                    result.lookedUp = found
                case .success(.failure(let failure)), .failure(let failure):
                    result.lookupFailed = true
                    result.failures = group.notifications.map { ($0, failure) }
                    return result
                }
            }
            for notification in group.notifications {
                let sent = await Self.attempt(
                    { try await api.send(messageID: notification.messageID, to: account, template: notification.template) }, what: "the send")
                if case .failure(let failure) = sent { result.failures.append((notification, failure)) } else { result.sent.append(notification.id) }
            }
            return result
        }
        var fresh: [String: String] = [:]
        for (group, answer) in zip(byPhone, answers) {
            if let account = answer.lookedUp { fresh[group.phone] = account }
            if answer.lookupFailed || answer.lookedUp != nil { result.summary.lookups += 1 }
            for id in answer.sent { outcomes[id] = .sent }
            for (notification, failure) in answer.failures {
                outcomes[notification.id] = kind(failure, attempts: notification.attempts, now: now)
                if failure.keyRefused { result.keyRefused = failure.message }
            }
        }
        if !fresh.isEmpty {
            let accounts = fresh
            try await environment.database.withSQL { sql in try await store.saveAccounts(accounts, credentialsID: credentialsID, at: now, sql) }
        }
        for notification in notifications {
            guard let kind = outcomes[notification.id] else { continue }
            result.outcomes.append(BlipOutcome(notificationID: notification.id, messageID: notification.messageID, kind: kind))
            switch kind {
            case .sent: result.summary.sent += 1
            case .failed: result.summary.failed += 1
            case .retry: result.summary.retrying += 1
            }
        }
        result.summary.claimed = notifications.count
        return result
    }

    /// What one phone's task did.
    private struct PhoneResult: Sendable {
        var lookedUp: String?
        var lookupFailed = false
        var sent: [String] = []
        var failures: [(BlipNotification, BlipAPI.Failure)] = []
    }

    /// `call`'s value, or its error as a ``BlipAPI/Failure`` (anything unexpected counts as passing).
    private static func attempt<T: Sendable>(_ call: () async throws -> T, what: String) async -> Result<T, BlipAPI.Failure> {
        do {
            return .success(try await call())
        } catch let failure as BlipAPI.Failure {
            return .failure(failure)
        } catch {
            return .failure(BlipAPI.Failure(message: "\(what) failed: \(error)", permanent: false))
        }
    }

    /// A failure as the notification's next state: failed for good, or due again after a backoff while it has tries left.
    private func kind(_ failure: BlipAPI.Failure, attempts: Int, now: Date) -> BlipOutcome.Kind {
        if failure.permanent { return .failed(failure.message) }
        guard attempts < settings.maxAttempts else {
            return .failed("gave up after \(attempts) attempts: \(failure.message)")
        }
        return .retry(failure.message, at: now.addingTimeInterval(settings.delay(afterAttempt: attempts, retryAfter: failure.retryAfter)))
    }

    /// `work` on every item with at most `settings.concurrency` at once; results in the items' order.
    private func concurrently<Item: Sendable, Output: Sendable>(
        _ items: [Item], _ work: @escaping @Sendable (Item) async -> Output
    ) async -> [Output] {
        guard !items.isEmpty else { return [] }
        return await withTaskGroup(of: (Int, Output).self) { group in
            var results = [Output?](repeating: nil, count: items.count)
            var next = 0
            for _ in 0..<min(settings.concurrency, items.count) {
                let index = next
                group.addTask { (index, await work(items[index])) }
                next += 1
            }
            for await (index, output) in group {
                results[index] = output
                if next < items.count {
                    let index = next
                    group.addTask { (index, await work(items[index])) }
                    next += 1
                }
            }
            return results.map { $0! }
        }
    }
}
