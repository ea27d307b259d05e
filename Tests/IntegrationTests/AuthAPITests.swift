// Authentication and roles through the real HTTP API: JWT login and refresh, expiry, API tokens, 401 and 403.
import Foundation
import IntegratorCore
import Testing

@Suite("Auth API")
struct AuthAPITests {
    @Test("login answers the documented token shape; refresh gives a new pair")
    func loginAndRefresh() async throws {
        try await TestApp.run { app in
            let login = try await app.client.json(.post, "/api/v1/auth/token", body: ["username": "admin", "password": .string(TestApp.adminPassword)])
            #expect(login.status == .ok)
            #expect(login.json["token_type"] == "bearer")
            #expect(login.json["expires_in"] == 900)
            let refreshToken = try #require(login.json["refresh_token"]?.stringValue)

            // A refresh token is not an access token.
            #expect(try await app.call(.get, "/api/v1/me", token: refreshToken).status == .unauthorized)

            let refreshed = try await app.client.json(.post, "/api/v1/auth/refresh", body: ["refresh_token": .string(refreshToken)])
            #expect(refreshed.status == .ok)
            let access = try #require(refreshed.json["access_token"]?.stringValue)
            let me = try await app.call(.get, "/api/v1/me", token: access)
            #expect(me.json["name"] == "admin")
            #expect(me.json["role"] == "admin")

            let wrong = try await app.client.json(.post, "/api/v1/auth/token", body: ["username": "admin", "password": "wrong-password-123"])
            #expect(wrong.status == .unauthorized)
            let nobody = try await app.client.json(.post, "/api/v1/auth/token", body: ["username": "nobody", "password": "wrong-password-123"])
            #expect(nobody.status == .unauthorized)
            #expect(nobody.text == wrong.text)
            let badRefresh = try await app.client.json(.post, "/api/v1/auth/refresh", body: ["refresh_token": "garbage"])
            #expect(badRefresh.status == .unauthorized)
        }
    }

    @Test("access tokens expire after 15 minutes of the injected clock")
    func expiry() async throws {
        try await TestApp.run { app in
            #expect(try await app.call(.get, "/api/v1/credentials").status == .ok)
            app.clock.advance(by: 901)
            let expired = try await app.call(.get, "/api/v1/credentials")
            #expect(expired.status == .unauthorized)
            #expect(expired.headers[.wwwAuthenticate] == "Bearer")
        }
    }

    @Test("no token, a malformed header or a forged token is 401")
    func unauthenticated() async throws {
        try await TestApp.run { app in
            #expect(try await app.call(.get, "/api/v1/integrations", token: "").status == .unauthorized)
            #expect(try await app.call(.get, "/api/v1/integrations", token: "eyJhbGciOiJIUzI1NiJ9.e30.abc").status == .unauthorized)
            #expect(try await app.call(.get, "/api/v1/integrations", token: "itk_notarealtoken").status == .unauthorized)
            let basic = try await app.client.execute(uri: "/api/v1/integrations", method: .get, headers: [.authorization: "Basic YWRtaW46eA=="])
            #expect(basic.status == .unauthorized)
        }
    }

    @Test("viewers read, operators cannot write credentials, admins can; writes refused change nothing")
    func roles() async throws {
        try await TestApp.run { app in
            let viewer = try await app.token(for: .viewer)
            let operatorToken = try await app.token(for: .operator)
            #expect(try await app.call(.get, "/api/v1/credentials", token: viewer).status == .ok)
            #expect(try await app.call(.get, "/api/v1/integrations", token: viewer).status == .ok)
            let body: JSONValue = ["name": "c", "type": "http-bearer", "secret": ["token": "t"]]
            let viewerWrite = try await app.call(.post, "/api/v1/credentials", body: body, token: viewer)
            #expect(viewerWrite.status == .forbidden)
            #expect(viewerWrite.errorCode == "forbidden")
            #expect(try await app.call(.post, "/api/v1/credentials", body: body, token: operatorToken).status == .forbidden)
            #expect(try await app.call(.post, "/api/v1/integrations", body: ["name": "d", "provider": "demo"], token: viewer).status == .forbidden)
            #expect(try await app.call(.get, "/api/v1/users", token: viewer).status == .forbidden)
            #expect(try await app.call(.get, "/api/v1/credentials").json["items"] == [])
            #expect(try await app.call(.post, "/api/v1/credentials", body: body).status == .created)
        }
    }

    @Test("the static API token acts as an admin")
    func staticToken() async throws {
        try await TestApp.run { app in
            let me = try await app.call(.get, "/api/v1/me", token: TestApp.apiToken)
            #expect(me.json["role"] == "admin")
            #expect(me.json["name"] == "api-token")
            let created = try await app.call(.post, "/api/v1/integrations", body: ["name": "m", "provider": "demo"], token: TestApp.apiToken)
            #expect(created.status == .created)
            #expect(try await app.call(.get, "/api/v1/me", token: TestApp.apiToken + "x").status == .unauthorized)
        }
    }

    @Test("personal API tokens act as their user and are stored only as hashes")
    func personalTokens() async throws {
        try await TestApp.run { app in
            _ = try await app.token(for: .viewer)
            let viewers = try await app.call(.get, "/api/v1/users?role=viewer")
            let viewerName = try #require(viewers.json["items"]?.arrayValue?.first?["username"]?.stringValue)
            let (token, _) = try await app.runtime.users.createPersonalToken(username: viewerName, name: "ci")
            #expect(token.reveal().hasPrefix("itk_"))
            let me = try await app.call(.get, "/api/v1/me", token: token.reveal())
            #expect(me.json["name"] == .string(viewerName))
            #expect(me.json["role"] == "viewer")
            #expect(try await app.call(.post, "/api/v1/integrations", body: ["name": "x", "provider": "demo"], token: token.reveal()).status == .forbidden)
            let stored = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT token_hash FROM api_tokens").all().map { try $0.decode(column: "token_hash", as: String.self) }
            }
            #expect(stored == [TokenService.hashPersonalToken(token)])
        }
    }

    @Test("a demoted user loses access at once; the last admin stays")
    func demotion() async throws {
        try await TestApp.run { app in
            let second = try await app.token(for: .admin)
            #expect(try await app.call(.get, "/api/v1/users", token: second).status == .ok)
            let users = try await app.call(.get, "/api/v1/users?role=admin")
            let secondID = try #require(users.json["items"]?.arrayValue?.first { $0["username"] != "admin" }?["id"]?.stringValue)
            #expect(try await app.call(.patch, "/api/v1/users/\(secondID)", body: ["role": "viewer"]).status == .ok)
            #expect(try await app.call(.get, "/api/v1/users", token: second).status == .forbidden)
            let adminID = try #require(users.json["items"]?.arrayValue?.first { $0["username"] == "admin" }?["id"]?.stringValue)
            #expect(try await app.call(.delete, "/api/v1/users/\(adminID)").status == .conflict)
            let weak = try await app.call(.post, "/api/v1/users", body: ["username": "x y", "role": "boss", "password": "short"])
            #expect(Set(weak.errorFields) == ["username", "role", "password"])
        }
    }
}
