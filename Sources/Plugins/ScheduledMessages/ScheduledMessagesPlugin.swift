// The scheduled messages plugin: the Scheduler API's paths (seed 000), one durable timer per message, firing through
// the webhooks plugin's signed, retried delivery.
import Foundation
import Hummingbird
import IntegratorCore
import NIOCore

extension Plugin {
    /// One-shot webhooks at an ISO 8601 time, at the Scheduler API's paths (`/messages…`, outside `/api/v1`).
    public static let scheduledMessages = Plugin(
        id: "scheduled-messages", name: "Scheduled messages",
        summary: "One-shot webhooks at a given time (Scheduler API compatible), delivered through the webhooks plugin.",
        taskHandlers: [ScheduledMessageFire()],
        migrations: ScheduledMessageMigrations.all,
        routes: ScheduledMessageRoutes.all, pages: ScheduledMessageAdminPages.all)
}

enum ScheduledMessageRoutes {
    static let all: [PluginRoute] = [
        PluginRoute(.post, "/messages", access: .role(.operator), doc: .scheduledMessageUpsert) { request, _, environment in
            let message = try await service(environment).upsert(try await environment.readJSON(request))
            return JSONValue.object(["status": "scheduled", "messageId": .string(message.id)]).response()
        },
        PluginRoute(.get, "/messages", access: .role(.viewer), doc: .scheduledMessageList) { _, _, environment in
            try await longList(environment, filter: nil, itemsKey: "scheduledJobs", render: \.jobJSON)
        },
        PluginRoute(.get, "/messages/search", access: .role(.viewer), doc: .scheduledMessageSearch) { request, _, environment in
            try await longList(environment, filter: try filter(request), itemsKey: "messages", render: \.searchJSON)
        },
        // The seed accepts the trailing slash too; the router ignores it. POST is its fallback for proxies that block DELETE.
        PluginRoute(.delete, "/messages/bulk", access: .role(.operator), doc: .scheduledMessageBulkDelete) { request, _, environment in
            try await bulkDelete(request, environment)
        },
        PluginRoute(.post, "/messages/bulk", access: .role(.operator), doc: .scheduledMessageBulkDeleteByPost) { request, _, environment in
            try await bulkDelete(request, environment)
        },
        PluginRoute(.get, "/messages/{message_id}", access: .role(.viewer), doc: .scheduledMessageGet) { _, context, environment in
            try await service(environment).message(try messageID(context)).json.response()
        },
        PluginRoute(.delete, "/messages/{message_id}", access: .role(.operator), doc: .scheduledMessageDelete) { _, context, environment in
            let id = try messageID(context)
            try await service(environment).delete(id)
            return JSONValue.object(["status": "deleted", "messageId": .string(id)]).response()
        },
        // Beyond the seed: fire a pending message now ("promote").
        PluginRoute(.post, "/messages/{message_id}/run", access: .role(.operator), doc: .scheduledMessageRun) { _, context, environment in
            let id = try messageID(context)
            let eventID = try await service(environment).runNow(id)
            return JSONValue.object(["status": "fired", "messageId": .string(id), "eventId": .string(eventID)]).response(status: .accepted)
        },
        // Beyond the seed: the webhook events that delivered messages with this id, once they fired.
        PluginRoute(.get, "/messages/{message_id}/deliveries", access: .role(.viewer), doc: .scheduledMessageDeliveries) { _, context, environment in
            try await service(environment).firings(of: try messageID(context)).response()
        },
    ]

    private static func service(_ environment: PluginEnvironment) -> ScheduledMessagesService {
        ScheduledMessagesService(environment: environment)
    }

    /// The path's id, percent-decoded.
    private static func messageID(_ context: APIRequestContext) throws -> String {
        try ScheduledMessageInput.pathID(try context.parameters.require("message_id"))
    }

    /// `prefix` and `contains` from the query. Values are percent-decoded and a `+` stays a `+`, so `%2B55…` and
    /// `+55…` both mean a leading plus sign.
    private static func filter(_ request: Request) throws -> MessageFilter {
        let query = request.uri.queryParameters
        return try MessageFilter(prefix: query["prefix"].map(String.init), contains: query["contains"].map(String.init))
    }

    private static func bulkDelete(_ request: Request, _ environment: PluginEnvironment) async throws -> Response {
        let ids = try await service(environment).delete(matching: try filter(request))
        return JSONValue.object(["deleted": .number(Double(ids.count)), "messageIds": .array(ids.map(JSONValue.string))]).response()
    }

    /// `{"<itemsKey>": [...], "count": n}` over every pending message that passes `filter`. One page is read before
    /// answering; a longer list is streamed a page at a time, so a million messages never sit in memory at once.
    private static func longList(
        _ environment: PluginEnvironment, filter: MessageFilter?, itemsKey: String,
        render: @escaping @Sendable (ScheduledMessage) -> JSONValue
    ) async throws -> Response {
        let service = service(environment)
        let pageSize = ScheduledMessagesService.chunkSize
        let first = try await service.page(after: nil, limit: pageSize, filter: filter)
        guard first.count == pageSize else {
            return JSONValue.object([itemsKey: .array(first.map(render)), "count": .number(Double(first.count))]).response()
        }
        let body = ResponseBody { writer in
            var buffer = ByteBuffer(string: #"{"\#(itemsKey)":["#)
            var count = 0
            var page = first
            while true {
                for message in page {
                    if count > 0 { buffer.writeString(",") }
                    buffer.writeString(render(message).encodedString())
                    count += 1
                }
                try await writer.write(buffer)
                buffer.clear()
                guard page.count == pageSize, let last = page.last else { break }
                page = try await service.page(after: last.id, limit: pageSize, filter: filter)
            }
            try await writer.write(ByteBuffer(string: #"],"count":\#(count)}"#))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: body)
    }
}
