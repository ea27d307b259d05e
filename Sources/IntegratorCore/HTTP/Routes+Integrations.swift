// /api/v1/integrations: admins configure, everyone reads.
import Hummingbird

extension Routes {
    func addIntegrations(to group: RouterGroup<APIRequestContext>) {
        group.get { request, context in
            _ = try context.require(.viewer)
            let filter = IntegrationFilter(
                provider: query(request, "provider"), credentialsID: query(request, "credentials"),
                active: try queryBool(request, "active"), queue: query(request, "queue"))
            return list(try await runtime.integrations.list(filter, page: try pageRequest(request)), render: Self.render)
        }
        group.post { request, context in
            _ = try context.require(.admin)
            let integration = try await runtime.integrations.create(try await readJSON(request))
            context.logger.info("integration created", metadata: ["integration.id": "\(integration.id)"])
            var created = Self.render(integration).objectValue ?? [:]
            // A provider meant to run periodically offers its schedule: the body that creates it, ready to post.
            if let cron = runtime.registry.provider(integration.provider)?.suggestedSchedule {
                created["suggested_schedule"] = [
                    "method": "POST", "path": "/api/v1/schedules",
                    "body": [
                        "name": .string("\(integration.name)-schedule"), "integration": .string(integration.id),
                        "crontab": ["expression": .string(cron), "timezone": "UTC"],
                    ],
                ]
            }
            return JSONValue.object(created).response(status: .created)
        }
        group.get(":id") { _, context in
            _ = try context.require(.viewer)
            return Self.render(try await runtime.integrations.get(id: try context.parameters.require("id"))).response()
        }
        group.patch(":id") { request, context in
            _ = try context.require(.admin)
            let integration = try await runtime.integrations.update(
                id: try context.parameters.require("id"), try await readJSON(request))
            return Self.render(integration).response()
        }
        group.delete(":id") { _, context in
            _ = try context.require(.admin)
            try await runtime.integrations.delete(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
    }
}
