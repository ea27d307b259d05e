// The webhooks plugin's pages in the admin web UI: tenants, each tenant's events with their attempts, the dead-letter
// list with redrive (one event or all of a tenant's).
import Foundation
import IntegratorCore
import SQLKit

enum WebhookAdminPages {
    static func all(options: WebhooksOptions) -> [PluginPage] {
        @Sendable func service(_ environment: PluginEnvironment) -> WebhooksService { WebhooksService(environment: environment, options: options) }
        return [
            .view("webhooks/tenants", title: "Webhook tenants") { request, environment in
                let page = try await service(environment).tenants(page: request.page)
                return AdminPage(title: "Webhook tenants", sections: [
                    .table(AdminTable(
                        columns: ["Tenant", "URL", "State", "Events", "Owner", "Updated"],
                        rows: page.items.map { tenant in
                            let id = tenant["tenant_id"]?.stringValue ?? ""
                            return AdminRow([
                                AdminCell(id, link: "webhooks/tenants/\(escapedPath(id))"), AdminCell(tenant["base_url"]?.stringValue ?? ""),
                                .state(tenant["active"]?.boolValue == true ? "active" : "disabled"),
                                AdminCell((tenant["enabled_events"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")),
                                AdminCell(tenant["owner"]?.stringValue ?? "—"), AdminCell(tenant["updated_at"]?.stringValue ?? ""),
                            ])
                        }, emptyText: "No tenants: POST /api/v1/webhooks/configure adds one.", nextCursor: page.nextCursor)),
                ])
            },
            .view("webhooks/tenants/{tenant_id}") { request, environment in
                let tenantID = try request.parameter("tenant_id")
                let metrics = try await service(environment).metrics(tenantID: tenantID)
                let events = try await recentEvents(tenantID: tenantID, before: request.query["cursor"].flatMap(PageRequest.decodeCursor),
                                                    environment: environment)
                let path = escapedPath(tenantID)
                return AdminPage(title: "Tenant \(tenantID)", sections: [
                    .links([AdminLink("Dead letters", link: "webhooks/tenants/\(path)/dead-letters")]),
                    .json(metrics, heading: "Metrics"),
                    .table(AdminTable(
                        columns: ["Event", "Type", "State", "Attempts", "Last status", "Created", "Failure"],
                        rows: events.items.map { item in
                            AdminRow([
                                AdminCell(item.event.id, link: "webhooks/events/\(item.event.id)"), AdminCell(item.event.eventType),
                                .state(item.event.state.rawValue), AdminCell("\(item.event.attemptCount)"),
                                AdminCell(item.lastStatus.map(String.init) ?? "—"), AdminCell(item.event.createdAt.apiString),
                                AdminCell(item.event.failureReason ?? ""),
                            ])
                        }, emptyText: "No events for this tenant.", nextCursor: events.nextCursor), heading: "Events, newest first"),
                ])
            },
            .view("webhooks/events/{event_id}") { request, environment in
                let eventID = try request.parameter("event_id")
                let found = try await service(environment).event(eventID)
                let delivery = found["deliveries"]?.arrayValue?.first ?? .null
                let state = delivery["state"]?.stringValue ?? ""
                var sections: [AdminSection] = [
                    .details([
                        AdminDetail("State", .state(state)),
                        AdminDetail("Tenant", AdminCell(found["event"]?["tenant_id"]?.stringValue ?? "",
                                                        link: "webhooks/tenants/\(escapedPath(found["event"]?["tenant_id"]?.stringValue ?? ""))")),
                        AdminDetail("URL", AdminCell(delivery["url"]?.stringValue ?? "—")),
                        AdminDetail("Attempts", AdminCell("\(delivery["attempt_count"]?.intValue ?? 0)")),
                        AdminDetail("Next attempt", AdminCell(delivery["next_attempt_at"]?.stringValue ?? "—")),
                        AdminDetail("Failure", AdminCell(delivery["failure_reason"]?.stringValue ?? "—")),
                    ]),
                ]
                if state == "dead" { sections.append(.buttons([AdminButton("Redrive", action: "webhooks/events/\(eventID)/redrive")])) }
                sections.append(.table(attemptsTable(delivery["attempts"]?.arrayValue ?? []), heading: "Attempts"))
                sections.append(.json(found["event"] ?? .null, heading: "Event"))
                return AdminPage(title: "Webhook event", sections: sections)
            },
            .view("webhooks/tenants/{tenant_id}/dead-letters") { request, environment in
                let tenantID = try request.parameter("tenant_id")
                let page = try await service(environment).deadLetters(tenantID: tenantID, page: request.page)
                let path = escapedPath(tenantID)
                return AdminPage(title: "Dead letters of \(tenantID)", sections: [
                    .buttons([AdminButton(
                        "Redrive all", action: "webhooks/tenants/\(path)/redrive",
                        confirm: "Send every dead event of \(tenantID) again?")]),
                    .table(AdminTable(
                        columns: ["Event", "Type", "Attempts", "Failed", "Reason"],
                        rows: page.items.map { item in
                            let id = item["event"]?["id"]?.stringValue ?? ""
                            return AdminRow([
                                AdminCell(id, link: "webhooks/events/\(id)"), AdminCell(item["event"]?["event_type"]?.stringValue ?? ""),
                                AdminCell("\(item["attempts"]?.arrayValue?.count ?? 0)"), AdminCell(item["failed_at"]?.stringValue ?? ""),
                                AdminCell(item["failure_reason"]?.stringValue ?? ""),
                            ], buttons: item["can_retry"]?.boolValue == true
                                ? [AdminButton("Redrive", action: "webhooks/events/\(id)/redrive")] : [])
                        }, emptyText: "The dead-letter list is empty.", nextCursor: page.nextCursor)),
                ])
            },
            .action("webhooks/events/{event_id}/redrive") { request, environment in
                let eventID = try request.parameter("event_id")
                _ = try await service(environment).redrive(eventID: eventID)
                return .redirect("webhooks/events/\(eventID)", notice: "Redriven: the event is pending again.")
            },
            .action("webhooks/tenants/{tenant_id}/redrive") { request, environment in
                let tenantID = try request.parameter("tenant_id")
                let count = try await service(environment).redrive(["tenant_id": .string(tenantID)])
                return .redirect("webhooks/tenants/\(escapedPath(tenantID))/dead-letters", notice: "Redrove \(count) event\(count == 1 ? "" : "s").")
            },
        ]
    }

    static func attemptsTable(_ attempts: [JSONValue]) -> AdminTable {
        AdminTable(
            columns: ["Attempt", "At", "Status", "Duration", "Error", "Response"],
            rows: attempts.map { attempt in
                AdminRow([
                    AdminCell("\(attempt["attempt"]?.intValue ?? 0)"), AdminCell(attempt["attempted_at"]?.stringValue ?? ""),
                    AdminCell(attempt["status_code"]?.intValue.map(String.init) ?? "no answer"),
                    AdminCell(attempt["duration_ms"]?.doubleValue.map { String(format: "%.0f ms", $0) } ?? ""),
                    AdminCell(attempt["error"]?.stringValue ?? ""), AdminCell(String((attempt["response_body"]?.stringValue ?? "").prefix(200))),
                ])
            }, emptyText: "No attempt yet.")
    }

    /// A tenant's events newest first with the status of their last attempt, 50 at a time below the id `before`.
    static func recentEvents(tenantID: String, before: String?, environment: PluginEnvironment) async throws
        -> (items: [(event: WebhookEvent, lastStatus: Int?)], nextCursor: String?)
    {
        let limit = PageRequest.defaultLimit
        let store = WebhookStore(secrets: environment.secrets)
        return try await environment.database.withSQL { sql in
            var query = SQLQueryString("SELECT * FROM webhooks_events WHERE tenant_id = \(bind: tenantID)")
            if let before { query.appendInterpolation(unsafeRaw: " AND id < "); query.appendInterpolation(bind: before) }
            query.appendInterpolation(unsafeRaw: " ORDER BY id DESC LIMIT \(limit + 1)")
            let page = Page(overfetched: try await sql.raw(query).all().map(WebhookStore.event), limit: limit, key: \.id)
            let attempts = try await store.attempts(eventIDs: page.items.map(\.id), sql)
            let items = page.items.map { event in (event, attempts[event.id]?.max { $0.attempt < $1.attempt }?.statusCode) }
            return (items, page.nextCursor)
        }
    }

    static func escapedPath(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? segment
    }
}
