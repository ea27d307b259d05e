// The declaration every route carries: what it is for, what it takes and what it answers. The OpenAPI document is
// built from these, so a route registered through ``DocumentedRoutes`` or declared by a plugin is documented by
// construction.

/// The documentation of one HTTP operation.
public struct APIOperation: Sendable {
    public var summary: String
    public var description: String?
    /// Groups operations in the document (`credentials`, `webhooks`, …).
    public var tag: String
    /// Query and header parameters, and path parameters that need more than "a non-empty string". Path parameters not
    /// listed here are documented from the path itself.
    public var parameters: [APIParameter]
    public var requestBody: APIRequestBody?
    /// The successful answers. Error answers are added from the route's shape (see ``OpenAPIDocument``) and ``errors``.
    public var responses: [APIResponse]
    /// Error statuses this operation answers besides those implied by its access, body and parameters, such as 409.
    public var errors: [Int]
    /// Where the resource a success answer names lives, so clients and fuzzers can follow it (OpenAPI links).
    public var links: [APILink]

    public init(
        _ summary: String, tag: String, description: String? = nil, parameters: [APIParameter] = [],
        body: APIRequestBody? = nil, responses: [APIResponse], errors: [Int] = [], links: [APILink] = []
    ) {
        self.summary = summary
        self.description = description
        self.tag = tag
        self.parameters = parameters
        self.requestBody = body
        self.responses = responses
        self.errors = errors
        self.links = links
    }
}

/// A value of a success answer that names a resource: every operation at `path` or below it takes it as the path
/// parameter `parameter`.
public struct APILink: Sendable {
    public var path: String
    public var parameter: String
    /// A JSON pointer into the answer's body, such as `/id`.
    public var pointer: String

    /// The answer's `pointer` is the `{parameter}` of `path` (for example `/api/v1/credentials/{id}`).
    public init(_ path: String, parameter: String, from pointer: String) {
        self.path = path
        self.parameter = parameter
        self.pointer = pointer
    }

    /// The answer's `id` names the resource at `collection/{id}`.
    public static func id(under collection: String) -> APILink { APILink("\(collection)/{id}", parameter: "id", from: "/id") }
}

/// A path, query or header parameter.
public struct APIParameter: Sendable {
    public enum Location: String, Sendable {
        case path
        case query
        case header
    }

    public var name: String
    public var location: Location
    public var description: String
    public var required: Bool
    public var schema: JSONValue

    public init(
        _ name: String, in location: Location, description: String, required: Bool = false, schema: JSONValue = OpenAPISchema.string
    ) {
        self.name = name
        self.location = location
        self.description = description
        self.required = location == .path || required
        self.schema = schema
    }

    public static func query(
        _ name: String, _ description: String, schema: JSONValue = OpenAPISchema.string, required: Bool = false
    ) -> APIParameter {
        APIParameter(name, in: .query, description: description, required: required, schema: schema)
    }

    public static func header(
        _ name: String, _ description: String, schema: JSONValue = OpenAPISchema.string, required: Bool = false
    ) -> APIParameter {
        APIParameter(name, in: .header, description: description, required: required, schema: schema)
    }

    public static func path(_ name: String, _ description: String, schema: JSONValue = OpenAPISchema.string) -> APIParameter {
        APIParameter(name, in: .path, description: description, schema: schema)
    }

    /// `limit` and `cursor`, as every paged list takes them.
    public static let paging: [APIParameter] = [
        .query("limit", "Items per page.", schema: OpenAPISchema.integer(1...PageRequest.maximumLimit)),
        .query("cursor", "The `next_cursor` of the previous page.", schema: OpenAPISchema.string),
    ]
}

/// A request body.
public struct APIRequestBody: Sendable {
    public var schema: JSONValue
    public var description: String?
    public var contentType: String
    public var required: Bool

    public init(_ schema: JSONValue, description: String? = nil, contentType: String = "application/json", required: Bool = true) {
        self.schema = schema
        self.description = description
        self.contentType = contentType
        self.required = required
    }
}

/// One documented answer.
public struct APIResponse: Sendable {
    public var status: Int
    public var description: String
    /// `nil` for answers without a body (204).
    public var schema: JSONValue?
    public var contentType: String
    /// Response headers by name, with their descriptions.
    public var headers: [String: String]

    public init(
        _ status: Int, _ description: String, schema: JSONValue? = nil, contentType: String = "application/json",
        headers: [String: String] = [:]
    ) {
        self.status = status
        self.description = description
        self.schema = schema
        self.contentType = contentType
        self.headers = headers
    }

    public static func ok(_ description: String, _ schema: JSONValue) -> APIResponse {
        APIResponse(200, description, schema: schema)
    }
    public static func created(_ description: String, _ schema: JSONValue) -> APIResponse {
        APIResponse(201, description, schema: schema)
    }
    public static func accepted(_ description: String, _ schema: JSONValue) -> APIResponse {
        APIResponse(202, description, schema: schema)
    }
    public static func noContent(_ description: String) -> APIResponse { APIResponse(204, description) }
}

/// JSON Schema (draft 2020-12, as OpenAPI 3.1 uses it) pieces for declarations.
public enum OpenAPISchema {
    public static let string: JSONValue = ["type": "string"]
    public static let boolean: JSONValue = ["type": "boolean"]
    public static let number: JSONValue = ["type": "number"]
    public static let integer: JSONValue = ["type": "integer"]
    /// Any JSON value.
    public static let any: JSONValue = [:]
    public static let dateTime: JSONValue = ["type": "string", "format": "date-time"]
    public static let anyObject: JSONValue = ["type": "object"]

    public static func string(
        minLength: Int? = nil, maxLength: Int? = nil, format: String? = nil, pattern: String? = nil, oneOf choices: [String]? = nil,
        description: String? = nil, examples: [String] = []
    ) -> JSONValue {
        var schema: [String: JSONValue] = ["type": "string"]
        if let minLength { schema["minLength"] = .number(Double(minLength)) }
        if let maxLength { schema["maxLength"] = .number(Double(maxLength)) }
        if let format { schema["format"] = .string(format) }
        if let pattern { schema["pattern"] = .string(pattern) }
        if let choices { schema["enum"] = .array(choices.map(JSONValue.string)) }
        if let description { schema["description"] = .string(description) }
        if !examples.isEmpty { schema["examples"] = .array(examples.map(JSONValue.string)) }
        return .object(schema)
    }

    /// An absolute `http` or `https` URL with a host, as the plugins that post to URLs accept them.
    public static func httpURL(maxLength: Int) -> JSONValue {
        string(
            maxLength: maxLength, format: "uri", pattern: "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s]+([/?#]\\S*)?$",
            examples: ["https://hooks.example.com/integrator"])
    }

    public static func integer(_ range: ClosedRange<Int>) -> JSONValue {
        ["type": "integer", "minimum": .number(Double(range.lowerBound)), "maximum": .number(Double(range.upperBound))]
    }

    /// The schema, or `null`.
    public static func nullable(_ schema: JSONValue) -> JSONValue {
        if case .object(var object) = schema, let type = object["type"]?.stringValue {
            object["type"] = [.string(type), "null"]
            if let choices = object["enum"]?.arrayValue { object["enum"] = .array(choices + [.null]) }
            return .object(object)
        }
        return ["anyOf": [schema, ["type": "null"]]]
    }

    public static func array(_ items: JSONValue) -> JSONValue { ["type": "array", "items": items] }

    /// A reference to a schema of the document's `components`.
    public static func ref(_ name: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(name)")] }

    /// An object whose listed properties are always present (answers), others allowed.
    public static func record(_ properties: [String: JSONValue], optional: Set<String> = [], description: String? = nil)
        -> JSONValue
    {
        object(properties, required: Set(properties.keys).subtracting(optional), description: description)
    }

    /// An object with these properties, `required` ones among them; other properties are allowed unless `closed`.
    public static func object(
        _ properties: [String: JSONValue], required: Set<String> = [], closed: Bool = false, description: String? = nil
    ) -> JSONValue {
        var schema: [String: JSONValue] = ["type": "object", "properties": .object(properties)]
        if !required.isEmpty { schema["required"] = .array(required.sorted().map(JSONValue.string)) }
        if closed { schema["additionalProperties"] = false }
        if let description { schema["description"] = .string(description) }
        return .object(schema)
    }

    /// A page of a cursor-paged list: `{"items": [...], "next_cursor": ...}`.
    public static func page(of item: JSONValue) -> JSONValue {
        record(["items": array(item), "next_cursor": nullable(string)])
    }

    /// `{"items": [...]}`, an unpaged list.
    public static func items(_ item: JSONValue) -> JSONValue { record(["items": array(item)]) }
}
