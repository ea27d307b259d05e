// /api/v1/credentials: admins write, everyone reads (secret fields masked), admins run connection tests.
import Hummingbird

extension Routes {
    func addCredentials(to group: DocumentedRoutes) {
        group.get(access: .role(.viewer), .listCredentials) { request, context in
            let page = try await runtime.credentials.list(type: query(request, "type"), page: try pageRequest(request))
            return list(page, render: Self.render)
        }
        group.post(access: .role(.admin), .createCredentials) { request, context in
            let view = try await runtime.credentials.create(try await readJSON(request))
            context.logger.info("credentials created", metadata: ["credentials.id": "\(view.id)", "credentials.type": "\(view.type)"])
            return Self.render(view).response(status: .created)
        }
        group.get(":id", access: .role(.viewer), .getCredentials) { _, context in
            return Self.render(try await runtime.credentials.get(id: try context.parameters.require("id"))).response()
        }
        group.patch(":id", access: .role(.admin), .updateCredentials) { request, context in
            let view = try await runtime.credentials.update(id: try context.parameters.require("id"), try await readJSON(request))
            return Self.render(view).response()
        }
        group.delete(":id", access: .role(.admin), .deleteCredentials) { _, context in
            try await runtime.credentials.delete(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
        group.post(":id/test", access: .role(.admin), .testCredentials) { _, context in
            let result = try await runtime.credentials.test(id: try context.parameters.require("id"), logger: context.logger)
            return JSONValue.object(["ok": .bool(result.ok), "message": .string(result.message)]).response()
        }
    }
}
