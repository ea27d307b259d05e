// The chat buffer plugin (seed 001, the Redis Message Queue): `POST /api/message` buffers a user's messages, and each
// message pushes the user's flush back by its ttl; at the deadline one webhook carries them all.
import Foundation
import Hummingbird
import IntegratorCore

extension Plugin {
    /// A per-user debounce buffer at the Redis Message Queue's path, flushed by durable timers through the webhooks
    /// plugin's signed, retried delivery.
    public static func chatBuffer(options: ChatBufferOptions = ChatBufferOptions()) -> Plugin {
        Plugin(
            id: "chat-buffer", name: "Chat buffer",
            summary: "Buffers each user's chat messages and posts them together once the user goes quiet (Redis Message Queue compatible).",
            taskHandlers: [ChatBufferFlush(options: options)],
            migrations: ChatBufferMigrations.all,
            routes: ChatBufferRoutes.all(options: options), pages: ChatBufferAdminPages.all(options: options))
    }
}

enum ChatBufferRoutes {
    static func all(options: ChatBufferOptions) -> [PluginRoute] {
        @Sendable func service(_ environment: PluginEnvironment) -> ChatBufferService { ChatBufferService(environment: environment, options: options) }
        return [
            // The seed's endpoint had no authentication; INTEGRATOR_CHAT_BUFFER_PUBLIC=true opens ours the same way.
            PluginRoute(.post, "/api/message", access: options.isPublic ? .open : .role(.operator), doc: .chatBufferMessage) { request, _, environment in
                try await service(environment).accept(try await environment.readJSON(request)).json.response()
            },
            // Users such as `5511…@s.whatsapp.net` arrive percent-encoded in the path.
            PluginRoute(.get, "/api/v1/chat-buffer/buffers/{user}", access: .role(.viewer), doc: .chatBufferBuffer) { _, context, environment in
                let raw = try context.parameters.require("user")
                return try await service(environment).buffer(userKey: raw.removingPercentEncoding ?? raw).response()
            },
            // Admin: the URL decides where every user's messages, tokens included, are sent.
            PluginRoute(.get, "/api/v1/chat-buffer/config", access: .role(.admin), doc: .chatBufferConfig) { _, _, environment in
                try await service(environment).configuration().response()
            },
            PluginRoute(.put, "/api/v1/chat-buffer/config", access: .role(.admin), doc: .chatBufferConfigure) { request, _, environment in
                try await service(environment).configure(try await environment.readJSON(request)).response()
            },
        ]
    }
}
