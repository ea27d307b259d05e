// How other plugins send through the webhooks delivery path: signed POSTs with retries, an attempt log and dead
// letters, for bodies and URLs of their own (a scheduled message's payload, a chat buffer's flush).
import Foundation
import IntegratorCore
import Logging
import Synchronization

/// Stores events of a plugin-owned tenant and enqueues their first attempt, in the caller's transaction: the event
/// exists if and only if the caller's own change commits.
///
/// An owned tenant is an ordinary tenant (its retry policy, timeout and headers can be changed through
/// `POST /api/v1/webhooks/configure`, its secret read through `GET /api/v1/webhooks/config/{tenant_id}/secret`), made on
/// first use. Its events each name their URL, and no failure switches it off.
struct WebhookDispatch: Sendable {
    let environment: PluginEnvironment

    init(environment: PluginEnvironment) {
        self.environment = environment
    }

    /// One delivery to make.
    struct Delivery: Sendable {
        /// Also the `webhook-id` header: a receiver deduplicates by it, and every retry repeats it.
        var eventID: String
        var eventType: String
        var targetURL: String
        /// Posted and signed as is.
        var body: String
        var severity: WebhookSeverity = .medium
        var headers: [String: String] = [:]
    }

    /// Makes the tenant `tenantID` owned by `owner` (with a new signing secret) unless it exists. Runs with every
    /// dispatch, so it reads only the tenant's owner, not its sealed secrets, and only until this process has seen the
    /// tenant committed: an owned tenant cannot be deleted through the API.
    /// - Throws: ``ServiceError`` (409) when a tenant configured through the API already has that id.
    func ensureOwnedTenant(_ tenantID: String, owner: String, in transaction: StoreTransaction) async throws {
        let seen = ownedTenantsSeen
        let key = Self.ownedTenantKey(tenantID, owner: owner)
        guard !seen.keys.withLock({ $0.contains(key) }) else { return }
        transaction.afterCommit { _ = seen.keys.withLock { $0.insert(key) } }
        let store = WebhookStore(secrets: environment.secrets)
        let existing = try await store.ownership(of: tenantID, transaction.sql)
        if existing.exists {
            guard existing.owner == owner else {
                throw ServiceError(.conflict, "webhook tenant '\(tenantID)' exists and is not the \(owner) plugin's; delete it to let the plugin make its own")
            }
            return
        }
        let now = environment.clock.now()
        let tenant = WebhookTenant(
            tenantID: tenantID, baseURL: "", defaultHeaders: [:], retry: WebhookRetryPolicy(), timeoutSeconds: 30,
            enabledEvents: ["*"], active: true, disabledReason: nil, authType: nil, authHeaderName: nil,
            secrets: WebhookTenantSecrets(secretKey: Self.newSigningSecret()), previousSecretExpiresAt: nil, failingSince: nil,
            owner: owner, createdAt: now, updatedAt: now)
        try await store.save(tenant, transaction.sql)
    }

    /// `true` once this process has seen the owned tenant committed: ``ensureOwnedTenant(_:owner:in:)`` would do
    /// nothing, and a caller may write without a transaction to join.
    func hasSeenOwnedTenant(_ tenantID: String, owner: String) -> Bool {
        ownedTenantsSeen.keys.withLock { $0.contains(Self.ownedTenantKey(tenantID, owner: owner)) }
    }

    private var ownedTenantsSeen: OwnedTenantsSeen {
        environment.shared.object("webhooks.owned-tenants-seen") { OwnedTenantsSeen() }
    }

    private static func ownedTenantKey(_ tenantID: String, owner: String) -> String { "\(owner)\u{0}\(tenantID)" }

    /// Who makes the first attempt of dispatched events.
    enum FirstAttempts: Sendable {
        /// A `webhooks.deliver` task, enqueued in the caller's transaction.
        case queued
        /// The caller's own task, right after its transaction commits (``deliverFirstAttempt(_:logger:)``), which
        /// saves a queue hop between the task and its delivery. Only for a task that, whenever it runs again (its
        /// worker died, the attempt could not be recorded), makes the first attempt of the event it dispatched before:
        /// the task's redelivery is what keeps the event from being left undelivered.
        case byCaller
    }

    /// Stores `deliveries` as events of the owned tenant and arranges their first attempts. An event id stored before is
    /// left as it is (a repeated dispatch stores nothing new); returns the ids stored now.
    @discardableResult
    func dispatch(
        _ deliveries: [Delivery], tenantID: String, owner: String, firstAttempts: FirstAttempts = .queued, in transaction: StoreTransaction
    ) async throws -> [String] {
        guard !deliveries.isEmpty else { return [] }
        try await ensureOwnedTenant(tenantID, owner: owner, in: transaction)
        let store = WebhookStore(secrets: environment.secrets)
        let now = environment.clock.now()
        var listed = Set<String>()
        let candidates = deliveries.filter { listed.insert($0.eventID).inserted }
        let events = candidates.map { delivery in
            WebhookEvent(
                id: delivery.eventID, tenantID: tenantID, eventType: delivery.eventType, severity: delivery.severity,
                targetURL: delivery.targetURL, customHeaders: delivery.headers, body: delivery.body, state: .pending,
                attemptCount: 0, roundAttempts: 0, createdAt: now, updatedAt: now)
        }
        let stored = try await store.insertUnlessStored(events, transaction.sql)
        let fresh = candidates.filter { stored.contains($0.eventID) }
        if firstAttempts == .queued {
            try await environment.tasks.enqueue(
                contentsOf: WebhookDelivery.firstAttempts(fresh.map { ($0.eventID, $0.severity) }, at: now), in: transaction)
        }
        return fresh.map(\.eventID)
    }

    /// Makes the first attempt of an event dispatched with ``FirstAttempts/byCaller``, once the dispatch committed, if it
    /// was not made yet: a task that runs again calls this again, and an attempt already recorded is skipped. Throws
    /// when the attempt could not be recorded (the database unreachable); the caller's task then fails and is retried.
    /// Returns the state written, or why none was.
    @discardableResult
    func deliverFirstAttempt(_ eventID: String, logger: Logger) async throws -> String {
        // Owned tenants are never switched off for failing, so the one option a delivery reads has no say here.
        try await WebhookDelivery(options: WebhooksOptions()).deliverOne(eventID, attempt: 1, environment: environment, logger: logger)
    }

    /// The delivery state of events (`pending`, `succeeded`, `dead`), by id; absent ids were never stored.
    func states(of eventIDs: [String]) async throws -> [String: WebhookDeliveryState] {
        let store = WebhookStore(secrets: environment.secrets)
        return try await environment.database.withSQL { sql in try await store.eventStates(eventIDs, sql) }
    }

    /// A Standard Webhooks secret: `whsec_` and 24 random bytes in base64.
    static func newSigningSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return "whsec_" + Data(bytes).base64EncodedString()
    }
}

/// The owned tenants (owner and id) this process has seen committed.
private final class OwnedTenantsSeen: Sendable {
    let keys = Mutex<Set<String>>([])
}
