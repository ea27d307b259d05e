// Form inputs generated from a plugin's field declarations (credentials' public and secret fields, a provider's
// config), and the JSON object a posted form stands for.
import Foundation

enum AdminFieldForms {
    /// One input per declared field, named `<prefix>.<field>`, showing `values` (or what was just posted), with the
    /// problems of `issues` next to their fields. Secret fields are never filled in; when `keepsSecrets` is set a blank
    /// one keeps the stored value and is not required.
    static func inputs(
        for set: FieldSet, prefix: String, values: [String: JSONValue], posted: AdminFormValues?, issues: [FieldIssue],
        keepsSecrets: Bool = false
    ) -> [AdminField] {
        set.fields.map { field in
            let name = "\(prefix).\(field.name)"
            var input = AdminField(
                name, label: field.title, isRequired: field.isRequired && !(field.isSecret && keepsSecrets),
                error: issues.first { $0.field == name || $0.field.hasPrefix(name + ".") || $0.field.hasPrefix(name + "[") }?.message)
            var help = field.help ?? ""
            if let defaultValue = field.defaultValue { help += (help.isEmpty ? "" : " ") + "Default: \(text(defaultValue))." }
            if field.isSecret {
                help += (help.isEmpty ? "" : " ") + (keepsSecrets ? "Write-only: leave blank to keep the stored value." : "Write-only: it is never shown again.")
            }
            input.help = help.isEmpty ? nil : help
            input.example = field.examples.first.map(text)
            input.placeholder = field.placeholder ?? dateHint(field)
            let current: JSONValue? = values[field.name]
            let postedValues = posted?.pairs.filter { $0.name == name }.map(\.value)
            switch field.kind {
            case .boolean:
                input.kind = .checkbox
                let checked = posted.map { $0.has(name) } ?? (current ?? field.defaultValue)?.boolValue ?? false
                input.selected = checked ? ["true"] : []
            case .array(let item):
                if let choices = field.choices {
                    input.kind = .multiSelect
                    input.options = choices.map { (text($0), text($0)) }
                    input.selected = Set(postedValues ?? (current ?? field.defaultValue)?.arrayValue?.map(text) ?? [])
                } else {
                    input.kind = .textarea
                    input.help = [input.help, "One \(item == .integer ? "number" : "value") per line."].compactMap { $0 }.joined(separator: " ")
                    input.value = postedValues?.first ?? current?.arrayValue?.map(text).joined(separator: "\n") ?? ""
                }
            case .string, .integer, .number:
                if let choices = field.choices {
                    input.kind = .select
                    input.options = (field.isRequired ? [] : [("", field.defaultValue.map { "(default: \(text($0)))" } ?? "(none)")])
                        + choices.map { (text($0), text($0)) }
                } else if field.isSecret {
                    input.kind = .password
                } else {
                    input.kind = field.kind == .string ? .text : .number
                }
                if !field.isSecret { input.value = postedValues?.first ?? current.map(text) ?? "" }
            }
            return input
        }
    }

    /// The object a posted form stands for under `prefix`: blank inputs are left out (so defaults apply and blank secrets
    /// keep their stored value), numbers that do not parse are passed on as text for the validator to name.
    static func object(from form: AdminFormValues, for set: FieldSet, prefix: String) -> [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        for field in set.fields {
            let name = "\(prefix).\(field.name)"
            switch field.kind {
            case .boolean:
                object[field.name] = .bool(form.has(name))
            case .array(let item):
                let values = field.choices == nil
                    ? (form[name] ?? "").split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                    : form.all(name)
                if !values.isEmpty || field.choices != nil && form.has(name) {
                    object[field.name] = .array(values.map { item == .integer ? number($0) : .string($0) })
                }
            case .integer, .number:
                if let value = form[name] { object[field.name] = number(value) }
            case .string:
                if field.isSecret {
                    // Secrets are kept exactly as typed: spaces may belong to them.
                    if let value = form.pairs.first(where: { $0.name == name })?.value, !value.isEmpty { object[field.name] = .string(value) }
                } else if let value = form[name] {
                    object[field.name] = .string(value)
                }
            }
        }
        return object
    }

    /// A JSON value as a person types it: strings without quotes, whole numbers without a fraction.
    static func text(_ value: JSONValue) -> String {
        switch value {
        case .string(let text): text
        case .number(let number): number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(number)
        case .bool(let flag): flag ? "true" : "false"
        case .null: ""
        default: value.encodedString()
        }
    }

    private static func number(_ text: String) -> JSONValue {
        Double(text).map(JSONValue.number) ?? .string(text)
    }

    private static func dateHint(_ field: Field) -> String? {
        if case .dateTime(let pattern) = field.format { return pattern }
        return nil
    }
}
