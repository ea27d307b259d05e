// /api/v1/users: admins only.
import Hummingbird

extension Routes {
    func addUsers(to group: DocumentedRoutes) {
        group.get(access: .role(.admin), .listUsers) { request, context in
            var role: Role?
            if let roleText = query(request, "role") {
                guard let parsed = Role(rawValue: roleText) else {
                    throw APIError.validation(ValidationFailure([.init(field: "role", message: "must be one of admin, operator, viewer")]))
                }
                role = parsed
            }
            return list(try await runtime.users.list(role: role, page: try pageRequest(request)), render: Self.render)
        }
        group.post(access: .role(.admin), .createUser) { request, context in
            let user = try await runtime.users.create(try await readJSON(request))
            return Self.render(user).response(status: .created)
        }
        group.get(":id", access: .role(.admin), .getUser) { _, context in
            return Self.render(try await runtime.users.get(id: try context.parameters.require("id"))).response()
        }
        group.patch(":id", access: .role(.admin), .updateUser) { request, context in
            return Self.render(try await runtime.users.update(id: try context.parameters.require("id"), try await readJSON(request)))
                .response()
        }
        group.delete(":id", access: .role(.admin), .deleteUser) { _, context in
            try await runtime.users.delete(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
    }
}
