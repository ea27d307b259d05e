// /api/v1/credentials: admins write, everyone reads (secret fields masked), admins run connection tests.
import Hummingbird

extension Routes {
    func addCredentials(to group: RouterGroup<APIRequestContext>) {
        group.get { request, context in
            _ = try context.require(.viewer)
            let page = try await runtime.credentials.list(type: query(request, "type"), page: try pageRequest(request))
            return list(page, render: Self.render)
        }
        group.post { request, context in
            _ = try context.require(.admin)
            let view = try await runtime.credentials.create(try await readJSON(request))
            context.logger.info("credentials created", metadata: ["credentials.id": "\(view.id)", "credentials.type": "\(view.type)"])
            return Self.render(view).response(status: .created)
        }
        group.get(":id") { _, context in
            _ = try context.require(.viewer)
            return Self.render(try await runtime.credentials.get(id: try context.parameters.require("id"))).response()
        }
        group.patch(":id") { request, context in
            _ = try context.require(.admin)
            let view = try await runtime.credentials.update(id: try context.parameters.require("id"), try await readJSON(request))
            return Self.render(view).response()
        }
        group.delete(":id") { _, context in
            _ = try context.require(.admin)
            try await runtime.credentials.delete(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
        group.post(":id/test") { _, context in
            _ = try context.require(.admin)
            let result = try await runtime.credentials.test(id: try context.parameters.require("id"), logger: context.logger)
            return JSONValue.object(["ok": .bool(result.ok), "message": .string(result.message)]).response()
        }
    }
}
