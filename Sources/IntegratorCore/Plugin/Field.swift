// One declared field of a plugin's credentials or config: the single source for validation, JSON Schema and masking.
import Foundation

/// A field a plugin declares. Build one with the static constructors (`.string`, `.secret`, `.integer`, …).
public struct Field: Sendable {
    /// The JSON type of the value.
    public enum Kind: Sendable, Equatable {
        case string
        case integer
        case number
        case boolean
        /// An array whose items all have the item kind.
        case array(of: ItemKind)
    }

    /// Types an array field may hold.
    public enum ItemKind: Sendable, Equatable {
        case string
        case integer
    }

    /// Extra shape a string must have.
    public enum Format: Sendable, Equatable {
        /// An absolute `http` or `https` URL with a host.
        case url
        /// Something with one `@` and a dot in the domain.
        case email
        /// A date and time written with the given pattern, using the tokens `YYYY`, `MM`, `DD`, `HH`, `mm`, `ss`
        /// (for example `YYYY-MM-DD HH:mm:ss`).
        case dateTime(pattern: String)
        /// An IANA time-zone identifier such as `America/Sao_Paulo`.
        case timeZone
    }

    public var name: String
    public var kind: Kind
    public var title: String
    public var help: String?
    public var examples: [JSONValue]
    public var placeholder: String?
    public var format: Format?
    /// The only values allowed (for arrays: allowed items).
    public var choices: [JSONValue]?
    public var defaultValue: JSONValue?
    public var isRequired: Bool
    /// Secret fields are encrypted at rest, write-only in the API and masked everywhere.
    public var isSecret: Bool
    public var minimum: Double?
    public var maximum: Double?
    public var minLength: Int?
    public var maxLength: Int?
    /// Fewest items an array field needs.
    public var minItems: Int?

    public init(
        name: String, kind: Kind, title: String, help: String? = nil, examples: [JSONValue] = [],
        placeholder: String? = nil, format: Format? = nil, choices: [JSONValue]? = nil, defaultValue: JSONValue? = nil,
        isRequired: Bool = false, isSecret: Bool = false, minimum: Double? = nil, maximum: Double? = nil,
        minLength: Int? = nil, maxLength: Int? = nil, minItems: Int? = nil
    ) {
        self.name = name
        self.kind = kind
        self.title = title
        self.help = help
        self.examples = examples
        self.placeholder = placeholder
        self.format = format
        self.choices = choices
        self.defaultValue = defaultValue
        self.isRequired = isRequired
        self.isSecret = isSecret
        self.minimum = minimum
        self.maximum = maximum
        self.minLength = minLength
        self.maxLength = maxLength
        self.minItems = minItems
    }
}

extension Field {
    /// A text field.
    public static func string(
        _ name: String, title: String, help: String? = nil, required: Bool = false, default defaultValue: String? = nil,
        format: Format? = nil, minLength: Int? = nil, maxLength: Int? = nil, examples: [String] = [],
        placeholder: String? = nil
    ) -> Field {
        Field(
            name: name, kind: .string, title: title, help: help, examples: examples.map(JSONValue.string),
            placeholder: placeholder, format: format, defaultValue: defaultValue.map(JSONValue.string),
            isRequired: required, minLength: minLength, maxLength: maxLength
        )
    }

    /// A secret text field: required unless said otherwise, never returned by the API, never logged.
    public static func secret(
        _ name: String, title: String, help: String? = nil, required: Bool = true, minLength: Int = 1,
        maxLength: Int? = 4096, placeholder: String? = nil
    ) -> Field {
        Field(
            name: name, kind: .string, title: title, help: help, placeholder: placeholder, isRequired: required,
            isSecret: true, minLength: minLength, maxLength: maxLength
        )
    }

    /// A whole number, optionally bounded.
    public static func integer(
        _ name: String, title: String, help: String? = nil, required: Bool = false, default defaultValue: Int? = nil,
        range: ClosedRange<Int>? = nil, examples: [Int] = [], placeholder: String? = nil
    ) -> Field {
        Field(
            name: name, kind: .integer, title: title, help: help, examples: examples.map { .number(Double($0)) },
            placeholder: placeholder, defaultValue: defaultValue.map { .number(Double($0)) }, isRequired: required,
            minimum: range.map { Double($0.lowerBound) }, maximum: range.map { Double($0.upperBound) }
        )
    }

    /// A number that may have a fraction, optionally bounded.
    public static func number(
        _ name: String, title: String, help: String? = nil, required: Bool = false,
        default defaultValue: Double? = nil, range: ClosedRange<Double>? = nil
    ) -> Field {
        Field(
            name: name, kind: .number, title: title, help: help, defaultValue: defaultValue.map(JSONValue.number),
            isRequired: required, minimum: range?.lowerBound, maximum: range?.upperBound
        )
    }

    /// A true/false switch.
    public static func boolean(
        _ name: String, title: String, help: String? = nil, required: Bool = false, default defaultValue: Bool? = nil
    ) -> Field {
        Field(
            name: name, kind: .boolean, title: title, help: help, defaultValue: defaultValue.map(JSONValue.bool),
            isRequired: required
        )
    }

    /// One of a fixed list of strings.
    public static func choice(
        _ name: String, title: String, options: [String], help: String? = nil, required: Bool = false,
        default defaultValue: String? = nil
    ) -> Field {
        Field(
            name: name, kind: .string, title: title, help: help, choices: options.map(JSONValue.string),
            defaultValue: defaultValue.map(JSONValue.string), isRequired: required
        )
    }

    /// Any number of strings from a fixed list (at least one).
    public static func choices(
        _ name: String, title: String, options: [String], help: String? = nil, required: Bool = false,
        default defaultValue: [String]? = nil
    ) -> Field {
        Field(
            name: name, kind: .array(of: .string), title: title, help: help, choices: options.map(JSONValue.string),
            defaultValue: defaultValue.map { .array($0.map(JSONValue.string)) }, isRequired: required, minItems: 1
        )
    }
}
