// Logging in and refreshing: POST /api/v1/auth/token and /api/v1/auth/refresh.
import Hummingbird

extension Routes {
    func addAuth(to group: DocumentedRoutes) {
        group.post("token", access: .open, .login) { request, _ in
            var input = try InputObject(try await readJSON(request))
            let username = input.string("username", required: true, length: 1...64)
            let password = input.string("password", required: true, length: 1...1000)
            try input.finish()
            guard let username, let password,
                let tokens = try await runtime.users.login(username: username, password: Secret(password))
            else {
                throw APIError(.unauthorized, code: "invalid_login", message: "wrong username or password")
            }
            return render(tokens)
        }
        group.post("refresh", access: .open, .refresh) { request, _ in
            var input = try InputObject(try await readJSON(request))
            let refreshToken = input.string("refresh_token", required: true, length: 1...4096)
            try input.finish()
            guard let refreshToken, let tokens = try await runtime.users.refresh(refreshToken) else {
                throw APIError(.unauthorized, code: "invalid_refresh_token", message: "the refresh token is invalid or expired")
            }
            return render(tokens)
        }
    }

    private func render(_ tokens: IssuedTokens) -> Response {
        JSONValue.object([
            "access_token": .string(tokens.accessToken),
            "refresh_token": .string(tokens.refreshToken),
            "token_type": "bearer",
            "expires_in": .number(Double(tokens.expiresIn)),
        ]).response()
    }

    /// `GET /api/v1/me`: who the token belongs to.
    func addSession(to group: DocumentedRoutes) {
        group.get("me", access: .role(.viewer), .me) { _, context in
            let principal = try context.require(.viewer)
            var body: [String: JSONValue] = ["name": .string(principal.name), "role": .string(principal.role.rawValue)]
            if case .user(let id, _) = principal.kind { body["id"] = .string(id) }
            return JSONValue.object(body).response()
        }
    }
}
