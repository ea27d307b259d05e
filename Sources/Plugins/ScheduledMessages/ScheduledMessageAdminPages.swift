// The scheduled messages plugin's pages in the admin web UI: pending messages (filtered by id prefix or fragment),
// one message with its firings, run now and delete.
import Foundation
import IntegratorCore

enum ScheduledMessageAdminPages {
    static let all: [PluginPage] = [
        .view("scheduled-messages", title: "Scheduled messages") { request, environment in
            let service = ScheduledMessagesService(environment: environment)
            var filter: MessageFilter?
            if request.query["prefix"] != nil || request.query["contains"] != nil {
                filter = try MessageFilter(prefix: request.query["prefix"], contains: request.query["contains"])
            }
            let pageRequest = request.page
            let messages = try await service.page(after: pageRequest.after, limit: pageRequest.limit + 1, filter: filter)
            let page = Page(overfetched: messages, limit: pageRequest.limit, key: \.id)
            return AdminPage(title: "Scheduled messages", sections: [
                .table(AdminTable(
                    columns: ["Message", "Due", "Webhook URL"],
                    rows: page.items.map { message in
                        AdminRow([
                            AdminCell(message.id, link: "scheduled-messages/\(escaped(message.id))"), AdminCell(message.dueAt.apiString),
                            AdminCell(message.webhookURL),
                        ], buttons: buttons(message.id))
                    },
                    emptyText: "No messages are waiting.",
                    filters: [
                        AdminField("prefix", label: "Id starts with", value: request.query["prefix"] ?? ""),
                        AdminField("contains", label: "Id contains", value: request.query["contains"] ?? ""),
                    ],
                    nextCursor: page.nextCursor)),
            ])
        },
        .view("scheduled-messages/{message_id}") { request, environment in
            let id = try request.parameter("message_id")
            let service = ScheduledMessagesService(environment: environment)
            let firings = try await service.firings(of: id)
            var sections: [AdminSection] = []
            if let message = try? await service.message(id) {
                sections.append(.details([
                    AdminDetail("Due", AdminCell(message.dueAt.apiString)), AdminDetail("Scheduled to", AdminCell(message.scheduleTo)),
                    AdminDetail("Webhook URL", AdminCell(message.webhookURL)),
                ]))
                sections.append(.buttons(buttons(id)))
                sections.append(.json(message.payload, heading: "Payload"))
            } else {
                sections.append(.text("Not waiting: it fired or was deleted."))
            }
            sections.append(.table(AdminTable(
                columns: ["Event", "Fired", "Delivery"],
                rows: (firings["deliveries"]?.arrayValue ?? []).map { firing in
                    let eventID = firing["eventId"]?.stringValue ?? ""
                    return AdminRow([
                        AdminCell(eventID, link: "webhooks/events/\(eventID)"), AdminCell(firing["firedAt"]?.stringValue ?? ""),
                        .state(firing["state"]?.stringValue ?? "—"),
                    ])
                }, emptyText: "It has not fired yet."), heading: "Firings"))
            return AdminPage(title: "Message \(id)", sections: sections)
        },
        .action("scheduled-messages/{message_id}/run") { request, environment in
            let id = try request.parameter("message_id")
            let eventID = try await ScheduledMessagesService(environment: environment).runNow(id)
            return .redirect("webhooks/events/\(eventID)", notice: "Fired; this is its webhook event.")
        },
        .action("scheduled-messages/{message_id}/delete") { request, environment in
            try await ScheduledMessagesService(environment: environment).delete(try request.parameter("message_id"))
            return .redirect("scheduled-messages", notice: "Message deleted.")
        },
    ]

    static func buttons(_ id: String) -> [AdminButton] {
        [
            AdminButton("Run now", action: "scheduled-messages/\(escaped(id))/run"),
            AdminButton("Delete", action: "scheduled-messages/\(escaped(id))/delete", confirm: "Delete the message \(id)?", isDangerous: true),
        ]
    }

    static func escaped(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? id
    }
}
