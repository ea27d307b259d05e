// The chat buffer plugin's pages in the admin web UI: where flushes go, the users whose messages wait (counts and
// flush times only, never the messages), and a flushed buffer's webhook delivery.
import Foundation
import IntegratorCore
import SQLKit

enum ChatBufferAdminPages {
    static func all(options: ChatBufferOptions) -> [PluginPage] {
        [
            .view("chat-buffer", title: "Chat buffers") { request, environment in
                let configuration = try await ChatBufferService(environment: environment, options: options).configuration()
                let limit = PageRequest.defaultLimit
                let after = request.page.after
                let buffers = try await environment.database.withSQL { sql in
                    try await sql.raw(
                        """
                        SELECT user_key, last_seq, first_at, flush_at FROM chat_buffer_users WHERE user_key > \(bind: after ?? "")
                        ORDER BY user_key LIMIT \(unsafeRaw: String(limit + 1))
                        """
                    ).all().map { row in
                        (user: try row.decode(column: "user_key", as: String.self), count: try row.decode(column: "last_seq", as: Int.self),
                         first: try row.decode(column: "first_at", as: Date.self), flush: try row.decode(column: "flush_at", as: Date.self))
                    }
                }
                let page = Page(overfetched: buffers, limit: limit, key: \.user)
                return AdminPage(title: "Chat buffers", sections: [
                    .details([
                        AdminDetail("Webhook URL", AdminCell(configuration["webhook_url"]?.stringValue ?? "not set: flushes wait")),
                        AdminDetail("Set by", AdminCell(configuration["source"]?.stringValue ?? "—")),
                        AdminDetail("Deliveries", AdminCell("webhook tenant \(ChatBufferService.tenantID)",
                                                            link: "webhooks/tenants/\(ChatBufferService.tenantID)")),
                        AdminDetail("Open to anyone", AdminCell(configuration["public"]?.boolValue == true ? "yes" : "no")),
                    ], heading: "Configuration"),
                    .table(AdminTable(
                        columns: ["User", "Messages waiting", "First message", "Flushes at"],
                        rows: page.items.map { buffer in
                            AdminRow([AdminCell(buffer.user), AdminCell("\(buffer.count)"), AdminCell(buffer.first.apiString),
                                      AdminCell(buffer.flush.apiString)])
                        }, emptyText: "No messages are waiting.", nextCursor: page.nextCursor), heading: "Open buffers"),
                ])
            },
        ]
    }
}
