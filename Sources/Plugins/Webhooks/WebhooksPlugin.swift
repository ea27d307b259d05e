// The webhooks plugin: the seed's API paths, its tables, the delivery task, and fetched records fanned out to tenants.
import Foundation
import Hummingbird
import IntegratorCore
import NIOCore

extension Plugin {
    /// Outbound webhooks (seed 002): per-tenant endpoints, signed deliveries, retries as durable timers, dead letters.
    public static func webhooks(options: WebhooksOptions = WebhooksOptions()) -> Plugin {
        Plugin(
            id: "webhooks", name: "Webhooks",
            summary: "Signed outbound webhooks per tenant, with retries, dead letters, redrive and metrics.",
            taskHandlers: [WebhookDelivery(options: options)],
            migrations: WebhookMigrations.all,
            routes: WebhookRoutes.all(options: options),
            eventSubscribers: [WebhookFanOut()], pages: WebhookAdminPages.all(options: options))
    }
}

enum WebhookRoutes {
    static func all(options: WebhooksOptions) -> [PluginRoute] {
        @Sendable func service(_ environment: PluginEnvironment) -> WebhooksService { WebhooksService(environment: environment, options: options) }
        return [
            PluginRoute(.post, "/api/v1/webhooks/configure", access: .role(.admin), doc: .webhooksConfigure) { request, _, environment in
                try await service(environment).configure(try await environment.readJSON(request)).response()
            },
            PluginRoute(.get, "/api/v1/webhooks/configs", access: .role(.viewer), doc: .webhooksConfigs) { request, _, environment in
                let page = try await service(environment).tenants(page: try environment.pageRequest(request))
                return environment.listResponse(page) { $0 }
            },
            PluginRoute(.delete, "/api/v1/webhooks/config/{tenant_id}", access: .role(.admin), doc: .webhooksDeleteTenant) { _, context, environment in
                try await service(environment).deleteTenant(try context.parameters.require("tenant_id"))
                return Response(status: .noContent)
            },
            // Like Svix's endpoint secret: receivers of an owned tenant's deliveries need the key to verify them.
            PluginRoute(.get, "/api/v1/webhooks/config/{tenant_id}/secret", access: .role(.admin), doc: .webhooksTenantSecret) { _, context, environment in
                try await service(environment).signingSecret(try context.parameters.require("tenant_id")).response()
            },
            PluginRoute(.post, "/api/v1/webhooks/send", access: .role(.operator), doc: .webhooksSend) { request, _, environment in
                let key = request.header("Idempotency-Key")
                let result = try await service(environment).send(try await environment.readJSON(request), idempotencyKey: key)
                return result.json.response(status: result.duplicate ? .ok : .accepted)
            },
            PluginRoute(.post, "/api/v1/webhooks/send/batch", access: .role(.operator), doc: .webhooksSendBatch) { request, _, environment in
                var input = try InputObject(try await environment.readJSON(request))
                let events = input.raw("events")
                try input.finish()
                guard let items = events?.arrayValue else {
                    throw ValidationFailure([FieldIssue(field: "events", message: "is required: an array of send bodies")])
                }
                let results = try await service(environment).send(contentsOf: items)
                return JSONValue.object(["results": .array(results.map(\.json))]).response(status: .accepted)
            },
            PluginRoute(.get, "/api/v1/webhooks/events/{event_id}", access: .role(.viewer), doc: .webhooksEvent) { _, context, environment in
                try await service(environment).event(try context.parameters.require("event_id")).response()
            },
            PluginRoute(.get, "/api/v1/webhooks/metrics/{tenant_id}", access: .role(.viewer), doc: .webhooksMetrics) { _, context, environment in
                try await service(environment).metrics(tenantID: try context.parameters.require("tenant_id")).response()
            },
            PluginRoute(.get, "/api/v1/webhooks/dead-letter", access: .role(.viewer), doc: .webhooksDeadLetters) { request, _, environment in
                guard let tenantID = request.uri.queryParameters["tenant_id"], !tenantID.isEmpty else {
                    throw ValidationFailure([FieldIssue(field: "tenant_id", message: "is required (?tenant_id=…)")])
                }
                let page = try await service(environment).deadLetters(tenantID: String(tenantID), page: try environment.pageRequest(request))
                return environment.listResponse(page) { $0 }
            },
            PluginRoute(.post, "/api/v1/webhooks/retry/{event_id}", access: .role(.operator), doc: .webhooksRetry) { _, context, environment in
                try await service(environment).redrive(eventID: try context.parameters.require("event_id")).response(status: .accepted)
            },
            PluginRoute(.post, "/api/v1/webhooks/dead-letter/redrive", access: .role(.operator), doc: .webhooksRedrive) { request, _, environment in
                let count = try await service(environment).redrive(try await environment.readJSON(request))
                return JSONValue.object(["redriven": .number(Double(count))]).response(status: .accepted)
            },
            // Open: a receiver calls it with what it got, and a signature check reveals nothing without the secret.
            PluginRoute(.post, "/api/v1/webhooks/receive", access: .open, doc: .webhooksReceive) { request, _, environment in
                var request = request
                let tenantID = request.header("X-Tenant-ID") ?? request.uri.queryParameters["tenant_id"].map(String.init)
                guard let tenantID, !tenantID.isEmpty else {
                    throw ValidationFailure([FieldIssue(field: "X-Tenant-ID", message: "is required: the tenant whose secret signed the body")])
                }
                let buffer: ByteBuffer
                do {
                    buffer = try await request.collectBody(upTo: environment.settings.maxBodySize)
                } catch is NIOTooManyBytesError {
                    throw APIError(.contentTooLarge, code: "body_too_large", message: "request body is larger than \(environment.settings.maxBodySize) bytes")
                }
                let received = request
                let verdict = try await service(environment).verify(tenantID: tenantID, body: Data(buffer.readableBytesView)) {
                    received.header($0)
                }
                return verdict.response()
            },
        ]
    }
}

/// Fetched records reach tenants: every change event whose type one of an active tenant's `enabled_events` matches
/// becomes a webhook event of that tenant, stored and enqueued in the transaction that stores the change events.
struct WebhookFanOut: ChangeEventSubscriber {
    let name = "webhooks.fan-out"

    func handle(_ events: [ChangeEvent], in transaction: StoreTransaction, environment: PluginEnvironment) async throws {
        let store = WebhookStore(secrets: environment.secrets)
        let subscriptions = try await store.activeSubscriptions(transaction.sql)
        guard !subscriptions.isEmpty else { return }
        let now = environment.clock.now()
        var outgoing: [WebhookEvent] = []
        for change in events {
            for subscription in subscriptions where EventPattern.matches(subscription.patterns, change.type) {
                let id = Identifier.make(now: now)
                let context: JSONValue = [
                    "integration_id": .string(change.integrationID), "record_id": .string(change.recordID),
                    "external_id": .string(change.externalID), "change_event_id": .string(change.id),
                ]
                outgoing.append(
                    WebhookEvent(
                        id: id, tenantID: subscription.tenantID, eventType: change.type, severity: .medium, targetURL: nil, customHeaders: [:],
                        body: WebhookEvent.body(
                            id: id, tenantID: subscription.tenantID, eventType: change.type, severity: .medium, payload: change.data,
                            context: context, createdAt: now),
                        state: .pending, attemptCount: 0, roundAttempts: 0, createdAt: now, updatedAt: now))
            }
        }
        guard !outgoing.isEmpty else { return }
        try await store.insert(outgoing, transaction.sql)
        try await environment.tasks.enqueue(
            contentsOf: WebhookDelivery.firstAttempts(outgoing.map { ($0.id, $0.severity) }, at: now), in: transaction)
    }
}

extension Request {
    /// The first value of header `name`, compared case-insensitively.
    fileprivate func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.canonicalName == wanted }?.value
    }
}
