// GET /api/v1/schema lists exactly the routes the router serves; wrong methods get 405 with Allow; the docs pages.
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegratorCore
import Plugins
import Testing

@Suite("OpenAPI document and docs pages")
struct OpenAPITests {
    /// Routes that are not part of the API and stay out of the document: the admin web UI (HTML pages for browsers)
    /// and the root path that leads to it. Every other route, `/health`, `/ready` and `/metrics` included, must be in it.
    static func isAPI(_ path: String) -> Bool {
        path != "/" && path != "/admin" && !path.hasPrefix("/admin/")
    }

    static func document(_ app: TestApp) async throws -> JSONValue {
        let response = try await app.call(.get, "/api/v1/schema", token: "")
        #expect(response.status == .ok, "the document needs no token")
        return response.json
    }

    /// `GET /api/v1/credentials/{id}` for every operation of the document.
    static func operations(_ document: JSONValue) -> Set<String> {
        var operations = Set<String>()
        for (path, item) in document["paths"]?.objectValue ?? [:] {
            for method in (item.objectValue ?? [:]).keys { operations.insert("\(method.uppercased()) \(path)") }
        }
        return operations
    }

    @Test("the document's operations are exactly the router's routes, apart from the admin UI")
    func documentMatchesRouter() async throws {
        try await TestApp.run { app in
            let document = try await Self.document(app)
            let routed = Set(
                APIServer.makeRouter(app.runtime).routes.map { "\($0.method) \($0.path)" }.filter { route in
                    Self.isAPI(String(route.split(separator: " ")[1]))
                })
            let documented = Self.operations(document)
            #expect(
                routed.subtracting(documented).isEmpty,
                "routes missing from the document: \(routed.subtracting(documented).sorted())")
            #expect(documented.subtracting(routed).isEmpty, "documented but not routed: \(documented.subtracting(routed).sorted())")
            for path in [
                "/health", "/api/v1/credentials/{id}", "/messages/{message_id}/run", "/api/message", "/api/v1/webhooks/send",
            ] {
                #expect(document["paths"]?[path] != nil, "\(path) is documented")
            }
            #expect(routed.count > 60, "the built-in plugins' routes are among them (\(routed.count))")
        }
    }

    @Test("every operation is declared: summary, tag, security, a success answer, and errors in the one error shape")
    func everyOperationIsDeclared() async throws {
        try await TestApp.run { app in
            let document = try await Self.document(app)
            #expect(document["openapi"] == "3.1.0")
            #expect(document["components"]?["securitySchemes"]?["bearerAuth"]?["scheme"] == "bearer")
            #expect(document["components"]?["schemas"]?["Error"]?["required"] == ["error"])
            for (path, item) in document["paths"]?.objectValue ?? [:] {
                for (method, operation) in item.objectValue ?? [:] {
                    let name = "\(method.uppercased()) \(path)"
                    #expect(operation["summary"]?.stringValue?.isEmpty == false, "\(name) has a summary")
                    #expect(
                        operation["description"]?.stringValue?.contains("does not document") == false,
                        "\(name) is documented by its plugin")
                    #expect(operation["tags"]?.arrayValue?.count == 1, "\(name) has a tag")
                    let responses = operation["responses"]?.objectValue ?? [:]
                    #expect(responses.keys.contains { $0.hasPrefix("2") }, "\(name) documents a success")
                    if let role = operation["x-required-role"]?.stringValue {
                        #expect(operation["security"] == [["bearerAuth": []]], "\(name) needs a token")
                        #expect(
                            responses["401"]?["content"]?["application/json"]?["schema"] == ["$ref": "#/components/schemas/Error"],
                            "\(name)")
                        #expect(Role(rawValue: role) != nil, "\(name): \(role)")
                    } else {
                        #expect(operation["security"] == [], "\(name) is open")
                    }
                    let declared = Set(
                        operation["parameters"]?.arrayValue?.filter { $0["in"] == "path" }.compactMap { $0["name"]?.stringValue }
                            ?? [])
                    let inPath = Set(
                        path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) })
                    #expect(declared == inPath, "\(name) declares its path parameters")
                }
            }
            #expect(document["paths"]?["/api/v1/users"]?["post"]?["x-required-role"] == "admin")
            let created = document["paths"]?["/api/v1/credentials"]?["post"]?["responses"]?["201"]?["links"]
            #expect(
                created?["get_api_v1_credentials_id"] == [
                    "operationId": "get_api_v1_credentials_id", "parameters": ["path.id": "$response.body#/id"],
                ])
            #expect(created?["post_api_v1_credentials_id_test"] != nil, "links reach the operations below the resource too")
            let operationIDs = (document["paths"]?.objectValue ?? [:]).values.flatMap {
                ($0.objectValue ?? [:]).values.compactMap { $0["operationId"]?.stringValue }
            }
            #expect(Set(operationIDs).count == operationIDs.count, "operation ids are unique")
            #expect(document["paths"]?["/api/v1/webhooks/receive"]?["post"]?["security"] == [])
        }
    }

    @Test("the plugins' credentials and config fields are schemas of the document, secrets write-only")
    func pluginFieldSchemas() async throws {
        try await TestApp.run { app in
            let schemas = try await Self.document(app)["components"]?["schemas"]
            let bearer = schemas?["credentials.http-bearer.secret"]
            #expect(bearer?["properties"]?["token"]?["writeOnly"] == true, "\(bearer ?? .null)")
            #expect(schemas?["provider.demo.config"]?["properties"]?["records"]?["type"] == "integer")
            let credentialsTypes = app.runtime.registry.credentialsTypes.map(\.id)
            let variants = schemas?["CredentialsInput"]?["oneOf"]?.arrayValue ?? []
            #expect(variants.compactMap { $0["properties"]?["type"]?["const"]?.stringValue }.sorted() == credentialsTypes.sorted())
            let body = try await app.call(.get, "/api/v1/schema")
            #expect(
                body.json["paths"]?["/api/v1/credentials"]?["post"]?["requestBody"]?["content"]?["application/json"]?["schema"]
                    == ["$ref": "#/components/schemas/CredentialsInput"])
        }
    }

    @Test("a plugin route without a declaration is still in the document, marked undocumented, with its access")
    func undocumentedPluginRoute() async throws {
        let plugin = Plugin(
            id: "bare", name: "Bare",
            routes: [
                PluginRoute(.get, "/bare/{thing}", access: .role(.operator)) { _, _, _ in JSONValue.object([:]).response() }
            ])
        try await TestApp.run(extraPlugins: [plugin]) { app in
            let operation = try await Self.document(app)["paths"]?["/bare/{thing}"]?["get"]
            #expect(operation?["x-plugin"] == "bare")
            #expect(operation?["x-required-role"] == "operator")
            #expect(operation?["description"]?.stringValue?.contains("does not document") == true, "\(operation ?? .null)")
            #expect(operation?["parameters"]?.arrayValue?.first?["name"] == "thing")
            #expect(operation?["responses"]?["403"] != nil)
        }
    }

    @Test("a wrong method on a known path is 405 with Allow, in the JSON error shape; an unknown path stays 404")
    func wrongMethod() async throws {
        try await TestApp.run { app in
            let cases: [(HTTPRequest.Method, String, String)] = [
                (.put, "/api/v1/credentials", "GET, POST"),
                (.post, "/api/v1/credentials/0190aaaa-0000-7000-8000-000000000000", "DELETE, GET, PATCH"),
                (.patch, "/messages/abc", "DELETE, GET"),
                (.delete, "/health", "GET"),
                (.get, "/api/message", "POST"),
                (.post, "/api/v1/schema", "GET"),
            ]
            for (method, path, allowed) in cases {
                for token in [app.adminToken, ""] {
                    let response = try await app.call(method, path, token: token)
                    #expect(response.status == .methodNotAllowed, "\(method) \(path): \(response.status)")
                    #expect(response.headers[.allow] == allowed, "\(method) \(path)")
                    #expect(response.errorCode == "method_not_allowed", "\(response.text)")
                    #expect(response.json["error"]?["message"]?.stringValue?.contains(allowed) == true)
                }
            }
            let unknown = try await app.call(.put, "/api/v1/nothing-here")
            #expect(unknown.status == .notFound)
            #expect(unknown.headers[.allow] == nil)
            #expect(unknown.errorCode == "not_found")
            let known = try await app.call(.get, "/api/v1/credentials/0190aaaa-0000-7000-8000-000000000000")
            #expect(known.status == .notFound, "a missing resource on a right method stays 404")
        }
    }

    @Test("the docs pages load Swagger UI and Redoc from the CDN by default, over the document")
    func docsPagesFromCDN() async throws {
        try await TestApp.run { app in
            let swagger = try await app.call(.get, "/api/v1/docs", token: "")
            #expect(swagger.status == .ok)
            #expect(swagger.headers[.contentType] == "text/html; charset=utf-8")
            #expect(
                swagger.text.contains(
                    #"<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>"#))
            #expect(swagger.text.contains(#"href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css""#))
            #expect(swagger.text.contains(#"url: "/api/v1/schema""#))
            let redoc = try await app.call(.get, "/api/v1/redoc", token: "")
            #expect(redoc.status == .ok)
            #expect(redoc.text.contains(#"<redoc spec-url="/api/v1/schema"></redoc>"#))
            #expect(
                redoc.text.contains(#"<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>"#))
            #expect(!swagger.text.contains(TestApp.apiToken) && !redoc.text.contains(TestApp.apiToken))
        }
    }

    @Test("INTEGRATOR_DOCS_ASSETS_URL points the pages at a local copy; a value that could break out of HTML is refused")
    func docsPagesFromLocalCopy() async throws {
        var values = ["INTEGRATOR_DOCS_ASSETS_URL": "/static/docs/"]
        #expect(try Settings(values: values).docsAssetsURL == "/static/docs")
        values["INTEGRATOR_DOCS_ASSETS_URL"] = "https://assets.internal.example/swagger"
        #expect(try Settings(values: values).docsAssetsURL == "https://assets.internal.example/swagger")
        for bad in [#"/x"><script>"#, "ftp://host/x", "static/docs", "//host/x", "https://"] {
            values["INTEGRATOR_DOCS_ASSETS_URL"] = bad
            #expect(throws: ConfigurationError.self, "\(bad)") { try Settings(values: values) }
        }
        try await TestApp.run { app in
            var settings = app.runtime.settings
            settings.docsAssetsURL = "/static/docs"
            let runtime = try await Runtime(
                settings: settings, database: app.runtime.database, registry: app.runtime.registry, clock: app.clock,
                logger: TestDatabase.logger, passwordHasher: PasswordHasher(cost: 4))
            do {
                try await APIServer.makeApplication(runtime).test(.router) { client in
                    let swagger = try await client.json(.get, "/api/v1/docs")
                    #expect(swagger.text.contains(#"<script src="/static/docs/swagger-ui-bundle.js"></script>"#), "\(swagger.text)")
                    #expect(swagger.text.contains(#"href="/static/docs/swagger-ui.css""#))
                    #expect(!swagger.text.contains("cdn.jsdelivr.net"))
                    let redoc = try await client.json(.get, "/api/v1/redoc")
                    #expect(redoc.text.contains(#"<script src="/static/docs/redoc.standalone.js"></script>"#))
                }
                await runtime.shutdown()
            } catch {
                await runtime.shutdown()
                throw error
            }
        }
    }
}
