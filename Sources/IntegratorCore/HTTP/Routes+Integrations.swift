// /api/v1/integrations: admins configure, everyone reads.
import Hummingbird

extension Routes {
    func addIntegrations(to group: DocumentedRoutes) {
        group.get(access: .role(.viewer), .listIntegrations) { request, context in
            let filter = IntegrationFilter(
                provider: query(request, "provider"), credentialsID: query(request, "credentials"),
                active: try queryBool(request, "active"), queue: query(request, "queue"))
            return list(try await runtime.integrations.list(filter, page: try pageRequest(request)), render: Self.render)
        }
        group.post(access: .role(.admin), .createIntegration) { request, context in
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
        group.get(":id", access: .role(.viewer), .getIntegration) { _, context in
            return Self.render(try await runtime.integrations.get(id: try context.parameters.require("id"))).response()
        }
        group.patch(":id", access: .role(.admin), .updateIntegration) { request, context in
            let integration = try await runtime.integrations.update(
                id: try context.parameters.require("id"), try await readJSON(request))
            return Self.render(integration).response()
        }
        group.delete(":id", access: .role(.admin), .deleteIntegration) { _, context in
            try await runtime.integrations.delete(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
    }
}
