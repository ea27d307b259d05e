// The OpenAPI 3.1 document of a server, built from the routes as they were registered (RouteCatalog) and from the
// plugins' field declarations.
import Hummingbird

/// Renders `GET /api/v1/schema`.
public enum OpenAPIDocument {
    typealias S = OpenAPISchema

    public static let securityScheme = "bearerAuth"

    /// The whole document for `routes`, with `registry`'s credentials and config schemas as components.
    public static func make(routes: [CatalogedRoute], registry: PluginRegistry) -> JSONValue {
        var paths: [String: [String: JSONValue]] = [:]
        for route in routes {
            paths[route.path, default: [:]][route.method.rawValue.lowercased()] = operation(route, among: routes)
        }
        var tags = Set(routes.compactMap { $0.operation?.tag })
        tags.formUnion(routes.filter { $0.operation == nil }.compactMap(\.pluginID))
        return [
            "openapi": "3.1.0",
            "info": [
                "title": "Integrator API",
                "version": "v1",
                "description": """
                Every route of the engine and of the installed plugins. Authenticate with `Authorization: Bearer <token>`: \
                an access token from `POST /api/v1/auth/token`, a personal API token, or `INTEGRATOR_API_TOKEN`. \
                Each operation says the role it needs (`x-required-role`). Errors share one shape, `Error`.
                """,
            ],
            "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
            "tags": .array(tags.sorted().map { ["name": .string($0)] }),
            "paths": .object(paths.mapValues(JSONValue.object)),
            "components": [
                "schemas": .object(OpenAPIComponents.schemas(registry)),
                "securitySchemes": [
                    securityScheme: [
                        "type": "http", "scheme": "bearer",
                        "description": "An access token (POST /api/v1/auth/token), a personal API token, or INTEGRATOR_API_TOKEN.",
                    ]
                ],
            ],
        ]
    }

    /// The operation object of one route.
    static func operation(_ route: CatalogedRoute, among routes: [CatalogedRoute]) -> JSONValue {
        let declared = route.operation ?? undocumented(route)
        var object: [String: JSONValue] = [
            "operationId": .string(operationID(route)),
            "summary": .string(declared.summary),
            "tags": [.string(declared.tag)],
        ]
        var description = declared.description.map { [$0] } ?? []
        switch route.access {
        case .open:
            object["security"] = []
            description.append("Needs no token.")
        case .role(let role):
            object["security"] = [[securityScheme: []]]
            object["x-required-role"] = .string(role.rawValue)
            description.append("Needs the \(role.rawValue) role.")
        }
        object["description"] = .string(description.joined(separator: "\n\n"))
        if let pluginID = route.pluginID { object["x-plugin"] = .string(pluginID) }

        let pathNames = pathParameterNames(route.path)
        var parameters = pathNames.map { name in
            declared.parameters.first { $0.location == .path && $0.name == name } ?? .path(name, "The \(name) of the resource.")
        }
        parameters += declared.parameters.filter { $0.location != .path }
        if !parameters.isEmpty { object["parameters"] = .array(parameters.map(render)) }

        if let body = declared.requestBody {
            var rendered: [String: JSONValue] = [
                "required": .bool(body.required), "content": [body.contentType: ["schema": body.schema]],
            ]
            if let text = body.description { rendered["description"] = .string(text) }
            object["requestBody"] = .object(rendered)
        }

        var responses: [String: JSONValue] = [:]
        let links = links(declared.links, among: routes)
        for response in declared.responses {
            var rendered = render(response)
            if (200..<300).contains(response.status), response.schema != nil, !links.isEmpty, case .object(var object) = rendered {
                object["links"] = .object(links)
                rendered = .object(object)
            }
            responses[String(response.status)] = rendered
        }
        for status in errorStatuses(route, declared, hasPathParameters: !pathNames.isEmpty) where responses[String(status)] == nil {
            responses[String(status)] = errorResponse(status)
        }
        object["responses"] = .object(responses)
        return .object(object)
    }

    /// One OpenAPI link per operation at or below each link's path that takes its parameter.
    static func links(_ declared: [APILink], among routes: [CatalogedRoute]) -> [String: JSONValue] {
        var links: [String: JSONValue] = [:]
        for link in declared {
            for target in routes where target.path == link.path || target.path.hasPrefix(link.path + "/") {
                guard pathParameterNames(target.path).contains(link.parameter) else { continue }
                let id = operationID(target)
                links[id] = [
                    "operationId": .string(id),
                    "parameters": ["path.\(link.parameter)": .string("$response.body#\(link.pointer)")],
                ]
            }
        }
        return links
    }

    /// The errors a route answers by its shape, plus those it declares.
    static func errorStatuses(_ route: CatalogedRoute, _ operation: APIOperation, hasPathParameters: Bool) -> Set<Int> {
        var statuses = Set(operation.errors)
        if case .role(let role) = route.access {
            statuses.insert(401)
            if role > .viewer { statuses.insert(403) }
        }
        if operation.requestBody != nil { statuses.formUnion([400, 413]) }
        if operation.parameters.contains(where: { $0.location != .path }) { statuses.insert(400) }
        if hasPathParameters { statuses.insert(404) }
        return statuses
    }

    static func errorResponse(_ status: Int) -> JSONValue {
        var response: [String: JSONValue] = [
            "description": .string(errorDescriptions[status] ?? HTTPResponse.Status(code: status).reasonPhrase),
            "content": ["application/json": ["schema": S.ref("Error")]],
        ]
        if status == 401 { response["headers"] = ["WWW-Authenticate": ["description": "`Bearer`", "schema": S.string]] }
        return .object(response)
    }

    static let errorDescriptions: [Int: String] = [
        400: "The body, a parameter or a field is wrong (`details` names each).",
        401: "No valid bearer token.",
        403: "The token's role is too low.",
        404: "No such resource.",
        409: "Conflicts with the resource's state.",
        413: "The body is larger than INTEGRATOR_MAX_BODY_SIZE.",
        502: "An upstream service failed.",
        503: "A dependency is unavailable or not configured.",
    ]

    static func render(_ response: APIResponse) -> JSONValue {
        var rendered: [String: JSONValue] = ["description": .string(response.description)]
        if let schema = response.schema { rendered["content"] = [response.contentType: ["schema": schema]] }
        if !response.headers.isEmpty {
            rendered["headers"] = .object(response.headers.mapValues { ["description": .string($0), "schema": S.string] })
        }
        return .object(rendered)
    }

    static func render(_ parameter: APIParameter) -> JSONValue {
        [
            "name": .string(parameter.name), "in": .string(parameter.location.rawValue),
            "description": .string(parameter.description),
            "required": .bool(parameter.required), "schema": parameter.schema,
        ]
    }

    /// The `{name}` segments of an OpenAPI path, in order.
    static func pathParameterNames(_ path: String) -> [String] {
        path.split(separator: "/").compactMap { segment in
            guard segment.hasPrefix("{"), segment.hasSuffix("}") else { return nil }
            return String(segment.dropFirst().dropLast())
        }
    }

    /// `get_api_v1_credentials_id`: unique, because method and path are.
    static func operationID(_ route: CatalogedRoute) -> String {
        let words = route.path.split { !($0.isLetter || $0.isNumber) }
        return ([route.method.rawValue.lowercased()] + words.map(String.init)).joined(separator: "_")
    }

    /// What the document says of a plugin route its plugin did not document: it exists, and answers something.
    static func undocumented(_ route: CatalogedRoute) -> APIOperation {
        APIOperation(
            "\(route.method) \(route.path)", tag: route.pluginID ?? "plugins",
            description: "The \(route.pluginID ?? "") plugin does not document this route.",
            responses: [APIResponse(200, "The plugin's answer.", schema: S.any)])
    }
}
