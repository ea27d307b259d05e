// The field DSL: validation with paths, defaults, masking and JSON Schema from one declaration.
import Foundation
import IntegratorCore
import Testing

@Suite("Field sets")
struct FieldSetTests {
    let fields: FieldSet = [
        .string("base_url", title: "Base URL", help: "Where the API lives.", required: true, format: .url, placeholder: "https://…"),
        .integer("records", title: "Records", default: 100, range: 1...1_000_000),
        .boolean("published", title: "Published", default: true),
        .string("from_date", title: "From", format: .dateTime(pattern: "YYYY-MM-DD HH:mm:ss"), examples: ["2023-01-01 00:00:00"]),
        .choices("streams", title: "Streams", options: ["events", "orders"], default: ["events"]),
        .choice("mode", title: "Mode", options: ["fast", "safe"]),
        .secret("api_key", title: "API key"),
    ]

    @Test("every bad field is reported at once, each with its path")
    func allIssues() {
        let issues = fields.issues(
            in: ["base_url": "ftp://x", "records": 0, "published": "yes", "from_date": "2023-02-30 00:00:00",
                 "streams": ["events", "events", "refunds"], "mode": "slow", "unknown": 1],
            at: "config")
        let paths = issues.map(\.field)
        #expect(Set(paths) == [
            "config.base_url", "config.records", "config.published", "config.from_date", "config.streams[2]", "config.streams",
            "config.mode", "config.api_key", "config.unknown",
        ])
        #expect(issues.first { $0.field == "config.records" }?.message == "must be at least 1 and at most 1000000")
        #expect(issues.first { $0.field == "config.published" }?.message == "must be true or false, got string")
        #expect(issues.first { $0.field == "config.api_key" }?.message == "is required")
    }

    @Test("defaults are applied and nulls dropped")
    func normalize() throws {
        let value = try fields.normalize(["base_url": "https://api.example.com", "api_key": "k", "mode": nil], at: "")
        #expect(value["records"] == 100)
        #expect(value["published"] == true)
        #expect(value["streams"] == ["events"])
        #expect(value["mode"] == nil)
        #expect(value["from_date"] == nil)
    }

    @Test("a non-object is one issue at the path itself")
    func notObject() {
        #expect(fields.issues(in: "text", at: "config") == [FieldIssue(field: "config", message: "must be an object, got string")])
        #expect(FieldSet.empty.issues(in: nil, at: "config").isEmpty)
    }

    @Test("integers reject fractions; numbers accept them")
    func numbers() {
        let set: FieldSet = [.integer("n", title: "N"), .number("x", title: "X", range: 0...1)]
        #expect(set.issues(in: ["n": 1.5, "x": 0.5], at: "").map(\.field) == ["n"])
        #expect(set.issues(in: ["n": 2, "x": 2], at: "").map(\.field) == ["x"])
    }

    @Test("secret fields are masked; public ones are not")
    func masking() {
        let masked = fields.masked(["base_url": "https://a.example", "api_key": "hunter2-secret"])
        #expect(masked["api_key"] == "********")
        #expect(masked["base_url"] == "https://a.example")
        #expect(fields.masked([:]).isEmpty)
    }

    @Test("the JSON Schema carries type, title, help, examples, placeholder, format, enum, default, required and the secret mark")
    func schema() throws {
        let schema = fields.jsonSchema(title: "Config")
        #expect(schema["type"] == "object")
        #expect(schema["additionalProperties"] == false)
        #expect(schema["required"] == ["base_url", "api_key"])
        let properties = try #require(schema["properties"])
        #expect(properties["base_url"] == [
            "type": "string", "title": "Base URL", "description": "Where the API lives.", "format": "uri", "placeholder": "https://…",
        ])
        #expect(properties["records"]?["default"] == 100)
        #expect(properties["records"]?["minimum"] == 1)
        #expect(properties["records"]?["maximum"] == 1_000_000)
        #expect(properties["from_date"]?["examples"] == ["2023-01-01 00:00:00"])
        #expect(properties["from_date"]?["placeholder"] == "YYYY-MM-DD HH:mm:ss")
        #expect(properties["mode"]?["enum"] == ["fast", "safe"])
        #expect(properties["streams"]?["items"]?["enum"] == ["events", "orders"])
        #expect(properties["api_key"]?["secret"] == true)
        #expect(properties["api_key"]?["writeOnly"] == true)
        #expect(properties["records"]?["secret"] == nil)
    }

    @Test("declarations that contradict themselves are found")
    func declarationProblems() {
        let set: FieldSet = [
            .integer("n", title: "N", default: 0, range: 1...5),
            .string("n", title: "Again"),
        ]
        let problems = set.declarationProblems()
        #expect(problems.contains("field 'n' is declared twice"))
        #expect(problems.contains { $0.contains("default of n") })
    }

    @Test("date patterns parse real dates only", arguments: [
        ("2024-02-29 23:59:59", true), ("2023-02-29 00:00:00", false), ("2023-01-01", false), ("2023-01-01 24:00:00", false),
        ("2023-1-01 00:00:00", false), ("2023-01-01 00:00:00x", false),
    ])
    func datePattern(text: String, valid: Bool) {
        let set: FieldSet = [.string("d", title: "D", format: .dateTime(pattern: "YYYY-MM-DD HH:mm:ss"))]
        #expect(set.issues(in: ["d": .string(text)], at: "").isEmpty == valid)
    }
}
