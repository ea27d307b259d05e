// Starts the real API on a free port over a fresh database, with a hand-driven clock and cheap bcrypt.
import Foundation
import AsyncHTTPClient
import Hummingbird
import HummingbirdTesting
import IntegratorCore
import NIOCore
import Plugins

/// One running API for one test.
struct TestApp: Sendable {
    let runtime: Runtime
    let client: any TestClientProtocol
    /// The clock the runtime reads, unless the test asked for the real one.
    let clock: ManualTimeSource
    /// An admin's access token, made at startup.
    let adminToken: String

    static let apiToken = "static-machine-token-for-tests-0001"
    static let adminPassword = "admin-password-for-tests"
    static let startDate = Date(timeIntervalSince1970: 1_790_000_000)

    /// Runs `body` against a live server. Extra plugins are registered beside the built-in ones.
    static func run<T: Sendable>(
        extraPlugins: [Plugin] = [], maxBodySize: Int = 1 << 20, realClock: Bool = false, _ body: @Sendable (TestApp) async throws -> T
    ) async throws -> T {
        try await TestDatabase.withDatabase { database in
            let settings = Settings(
                database: database.location, secretKeys: try SecretKeyRing(parsing: SecretKeyRing.generateEncodedKey(), variable: "test"),
                apiToken: Secret(apiToken), httpHost: "127.0.0.1", httpPort: 0, maxBodySize: maxBodySize,
                // Fake external APIs listen on 127.0.0.1.
                outboundAllowedRanges: [IPAddressRange("127.0.0.0/8")!])
            let clock = ManualTimeSource(realClock ? Date() : startDate)
            let runtime = try await Runtime(
                settings: settings, database: database, registry: try PluginRegistry(BuiltinPlugins.all + extraPlugins),
                clock: realClock ? SystemTimeSource() : clock, logger: TestDatabase.logger, passwordHasher: PasswordHasher(cost: 4))
            // The engine's tables exist already; these are the plugins' own.
            try await runtime.migrator.migrate(database)
            _ = try await runtime.users.create(username: "admin", role: "admin", password: Secret(adminPassword))
            let app = APIServer.makeApplication(runtime)
            do {
                let value = try await app.test(.live) { client in
                    let login = try await client.json(.post, "/api/v1/auth/token", body: ["username": "admin", "password": .string(adminPassword)])
                    guard login.status == .ok, let token = login.json["access_token"]?.stringValue else {
                        throw TestSetupError("admin login failed: \(login.status)")
                    }
                    return try await body(TestApp(runtime: runtime, client: client, clock: clock, adminToken: token))
                }
                await runtime.shutdown()
                return value
            } catch {
                await runtime.shutdown()
                throw error
            }
        }
    }

    /// Calls the API as the admin (or with `token`, or with no token when `token` is the empty string).
    func call(_ method: HTTPRequest.Method, _ path: String, body: JSONValue? = nil, token: String? = nil) async throws -> JSONResponse {
        try await client.json(method, path, body: body, token: token ?? adminToken)
    }

    /// Calls the API as the admin over a connection of its own. The test client pipelines every call on one connection,
    /// which the server answers one at a time, so requests meant to reach the server together go through here.
    /// The answer carries its status and body, not its headers.
    func callConcurrently(_ method: HTTPRequest.Method, _ path: String, body: JSONValue? = nil) async throws -> JSONResponse {
        guard let port = client.port else { throw TestSetupError("the test server has no port") }
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .RAW(value: method.rawValue)
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "authorization", value: "Bearer \(adminToken)")
        if let body { request.body = .bytes(ByteBuffer(string: body.encodedString())) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let buffer = try await response.body.collect(upTo: 1 << 20)
        return JSONResponse(status: HTTPResponse.Status(code: Int(response.status.code)), headers: [:], text: String(buffer: buffer))
    }

    /// Creates a user with `role` and returns an access token for them.
    func token(for role: Role) async throws -> String {
        let username = "\(role.rawValue)-\(UUID().uuidString.prefix(8))"
        let password = "password-for-\(username)"
        let created = try await call(.post, "/api/v1/users", body: ["username": .string(username), "role": .string(role.rawValue), "password": .string(password)])
        guard created.status == .created else { throw TestSetupError("creating \(role) failed: \(created.text)") }
        let login = try await client.json(.post, "/api/v1/auth/token", body: ["username": .string(username), "password": .string(password)])
        guard let token = login.json["access_token"]?.stringValue else { throw TestSetupError("login failed: \(login.text)") }
        return token
    }
}

/// A response with its body parsed as JSON (``JSONValue/null`` when empty or not JSON).
struct JSONResponse: Sendable {
    let status: HTTPResponse.Status
    let headers: HTTPFields
    let text: String

    var json: JSONValue { (try? JSONValue.parse(text)) ?? .null }
    var errorCode: String? { json["error"]?["code"]?.stringValue }
    var errorFields: [String] { json["error"]?["details"]?.arrayValue?.compactMap { $0["field"]?.stringValue } ?? [] }
}

extension TestClientProtocol {
    func json(_ method: HTTPRequest.Method, _ path: String, body: JSONValue? = nil, rawBody: String? = nil, token: String? = nil)
        async throws -> JSONResponse
    {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let token, !token.isEmpty { headers[.authorization] = "Bearer \(token)" }
        let payload = rawBody ?? body?.encodedString()
        let response = try await execute(uri: path, method: method, headers: headers, body: payload.map { ByteBuffer(string: $0) })
        return JSONResponse(status: response.status, headers: response.headers, text: String(buffer: response.body))
    }
}
