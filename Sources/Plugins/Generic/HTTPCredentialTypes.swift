// Credential types any HTTP plugin can accept: bearer token, basic auth, a custom header, a query parameter.
// Each signs the requests of the plugin's `context.http` itself (``RequestAuthenticating``).
import Foundation
import IntegratorCore

/// `Authorization: Bearer <token>`.
public struct HTTPBearerCredentials: RequestAuthenticating {
    public let id = "http-bearer"
    public let name = "HTTP bearer token"
    public let publicFields: FieldSet = []
    public let secretFields: FieldSet = [
        .secret("token", title: "Token", help: "Sent as `Authorization: Bearer <token>`.")
    ]

    public init() {}

    public func authenticate(_ request: inout OutboundRequest, with credentials: CredentialValues) throws {
        let token = try requiredSecret("token", in: credentials)
        request.setHeader("authorization", "Bearer \(token.reveal())")
    }
}

/// HTTP basic authentication.
public struct HTTPBasicCredentials: RequestAuthenticating {
    public let id = "http-basic"
    public let name = "HTTP basic auth"
    public let publicFields: FieldSet = [
        .string("username", title: "Username", required: true, minLength: 1, maxLength: 256)
    ]
    public let secretFields: FieldSet = [
        .secret("password", title: "Password")
    ]

    public init() {}

    public func validate(_ credentials: CredentialValues) -> [FieldIssue] {
        // RFC 7617: the user-id cannot contain a colon, or the server splits it in the wrong place.
        if credentials.string("username")?.contains(":") == true {
            return [FieldIssue(field: "public.username", message: "must not contain ':'")]
        }
        return []
    }

    public func authenticate(_ request: inout OutboundRequest, with credentials: CredentialValues) throws {
        let password = try requiredSecret("password", in: credentials)
        let username = credentials.string("username") ?? ""
        request.setHeader("authorization", "Basic " + Data("\(username):\(password.reveal())".utf8).base64EncodedString())
    }
}

/// A secret sent in a header of the plugin's choosing, such as `X-API-Key` or Sympla's `s_token`.
public struct HTTPHeaderCredentials: RequestAuthenticating {
    public let id = "http-header"
    public let name = "HTTP header"
    public let publicFields: FieldSet = [
        .string(
            "header_name", title: "Header name", help: "The request header that carries the secret.", required: true,
            minLength: 1, maxLength: 128, examples: ["X-API-Key"], placeholder: "X-API-Key")
    ]
    public let secretFields: FieldSet = [
        .secret("value", title: "Header value")
    ]

    public init() {}

    public func validate(_ credentials: CredentialValues) -> [FieldIssue] {
        guard let header = credentials.string("header_name") else { return [] }
        // RFC 9110 token characters; anything else would corrupt the request.
        let allowed = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        if !header.allSatisfy({ allowed.contains($0) }) {
            return [FieldIssue(field: "public.header_name", message: "must be a valid HTTP header name (letters, digits, '-', no spaces)")]
        }
        if ["authorization", "host", "content-length", "cookie"].contains(header.lowercased()) {
            return [FieldIssue(field: "public.header_name", message: "must not be a reserved header (use http-bearer or http-basic for Authorization)")]
        }
        return []
    }

    public func authenticate(_ request: inout OutboundRequest, with credentials: CredentialValues) throws {
        let value = try requiredSecret("value", in: credentials)
        guard let header = credentials.string("header_name") else {
            throw PluginError("credentials of type '\(id)' have no 'header_name'", permanent: true)
        }
        request.setHeader(header, value.reveal())
    }
}

/// A secret sent as a query parameter, for APIs that take `?api_key=…`.
public struct HTTPQueryCredentials: RequestAuthenticating {
    public let id = "http-query"
    public let name = "HTTP query parameter"
    public let publicFields: FieldSet = [
        .string(
            "param_name", title: "Parameter name", help: "The query parameter that carries the secret.", required: true,
            minLength: 1, maxLength: 128, examples: ["api_key"], placeholder: "api_key")
    ]
    public let secretFields: FieldSet = [
        .secret("value", title: "Parameter value")
    ]

    public init() {}

    public func validate(_ credentials: CredentialValues) -> [FieldIssue] {
        guard let name = credentials.string("param_name") else { return [] }
        if name.contains(where: { "&=#?/ ".contains($0) }) {
            return [FieldIssue(field: "public.param_name", message: "must not contain '&', '=', '#', '?', '/' or spaces")]
        }
        return []
    }

    /// Adds the parameter. The client never writes query strings to errors or logs, so the value stays out of both.
    public func authenticate(_ request: inout OutboundRequest, with credentials: CredentialValues) throws {
        let value = try requiredSecret("value", in: credentials)
        guard let name = credentials.string("param_name") else {
            throw PluginError("credentials of type '\(id)' have no 'param_name'", permanent: true)
        }
        request.query.removeAll { $0.name == name }
        request.query.append(URLQueryItem(name: name, value: value.reveal()))
    }
}

extension Plugin {
    /// The generic HTTP credential types.
    public static let generic = Plugin(
        id: "generic", name: "Generic HTTP credentials",
        summary: "Bearer, basic, header and query-parameter credentials for any HTTP provider.",
        credentialsTypes: [HTTPBearerCredentials(), HTTPBasicCredentials(), HTTPHeaderCredentials(), HTTPQueryCredentials()]
    )
}
