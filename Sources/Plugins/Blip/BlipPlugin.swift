// The BLiP plugin: credentials, the `blip-notifications` provider, the outbox API and BLiP's status callbacks.
import Foundation
import Hummingbird
import IntegratorCore

extension Plugin {
    /// WhatsApp template notifications through BLiP (seed 004).
    public static let blip = Plugin(
        id: "blip", name: "BLiP WhatsApp notifications",
        summary: "WhatsApp template messages through BLiP from an outbox or a business table, with retries and delivery status.",
        credentialsTypes: [BlipCredentials(), BlipDatabaseCredentials()], providers: [BlipNotificationsProvider()],
        migrations: BlipMigrations.all, routes: BlipRoutes.all, pages: BlipAdminPages.all)
}

enum BlipRoutes {
    static let all: [PluginRoute] = [
        PluginRoute(.post, "/api/v1/notifications", access: .role(.operator), doc: .blipCreate) { request, _, environment in
            let created = try await BlipService(environment: environment).create(try await environment.readJSON(request))
            return created.json.response(status: created.duplicate ? .ok : .created)
        },
        PluginRoute(.post, "/api/v1/notifications/bulk", access: .role(.operator), doc: .blipCreateBulk) { request, _, environment in
            var input = try InputObject(try await environment.readJSON(request))
            let items = input.raw("notifications")
            try input.finish()
            guard let items = items?.arrayValue else {
                throw ValidationFailure([FieldIssue(field: "notifications", message: "is required: an array of notifications")])
            }
            let created = try await BlipService(environment: environment).create(contentsOf: items)
            return JSONValue.object(["items": .array(created.map(\.json))]).response(status: .created)
        },
        PluginRoute(.get, "/api/v1/notifications", access: .role(.viewer), doc: .blipList) { request, _, environment in
            let query = request.uri.queryParameters
            let page = try await BlipService(environment: environment).notifications(
                status: query["status"].map(String.init), phone: query["phone"].map(String.init), page: try environment.pageRequest(request))
            return environment.listResponse(page) { $0 }
        },
        PluginRoute(.get, "/api/v1/notifications/{id}", access: .role(.viewer), doc: .blipGet) { _, context, environment in
            try await BlipService(environment: environment).notification(try context.parameters.require("id")).response()
        },
        // Open: BLiP calls it with no Integrator token; the credentials' status secret authenticates it.
        PluginRoute(.post, "/api/v1/blip/status", access: .open, doc: .blipStatus) { request, _, environment in
            let query = request.uri.queryParameters
            let secret = request.headers.first { $0.name.canonicalName == "x-blip-secret" }?.value ?? query["secret"].map(String.init)
            let answer = try await BlipService(environment: environment).receiveStatus(
                try await environment.readJSON(request), credentialsID: query["credentials"].map(String.init), secret: secret)
            return answer.response()
        },
    ]
}

extension BlipService.Created {
    var json: JSONValue {
        guard duplicate, case .object(var object) = notification else { return notification }
        object["duplicate"] = true
        return .object(object)
    }
}
