// Turns admin pages into HTML with the mustache templates shipped in the package's resources. Every text goes
// through the templates' escaping; only the engine's own chart markup is inserted as it is.
import Foundation
import Mustache

/// The templates and static files of the admin, loaded once per process.
struct AdminTemplates: Sendable {
    let library: MustacheLibrary
    /// `admin.css` and `admin.js`, by file name.
    let assets: [String: String]

    static let assetNames = ["admin.css", "admin.js"]

    /// The resource bundle SwiftPM builds for this target, looked for beside the executable (where the Dockerfile
    /// copies it) and in the build folder. Found by hand rather than through `Bundle.module`, which stops the process
    /// when the bundle is missing: a server without its bundle serves the API and says why the admin is unavailable.
    static let bundleName = "Integrator_IntegratorCore.resources"

    static func load() throws -> AdminTemplates {
        var candidates: [URL] = []
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        for folder in [Bundle.main.bundleURL, Bundle.main.resourceURL, executable].compactMap({ $0 }) {
            candidates.append(folder.appendingPathComponent(bundleName).appendingPathComponent("Templates"))
        }
        // A checkout's own sources, for test binaries and `swift run`.
        candidates.append(URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Templates"))
        guard let folder = candidates.first(where: { FileManager.default.fileExists(atPath: $0.appendingPathComponent("layout.mustache").path) })
        else {
            throw AdminTemplateError(
                message: "the admin templates are missing: put \(bundleName) beside the integrator binary (looked in \(candidates.map(\.path)))")
        }
        return try load(from: folder)
    }

    static func load(from folder: URL) throws -> AdminTemplates {
        var library = MustacheLibrary()
        var assets: [String: String] = [:]
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
        for name in names {
            let text = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            if name.hasSuffix(".mustache") {
                try library.register(text, named: String(name.dropLast(".mustache".count)))
            } else if assetNames.contains(name) {
                assets[name] = text
            }
        }
        for required in ["layout", "login", "table", "form", "field", "button", "cell", "details"]
        where library.getTemplate(named: required) == nil {
            throw AdminTemplateError(message: "the admin template \(required).mustache is missing from \(folder.path)")
        }
        return AdminTemplates(library: library, assets: assets)
    }

    func render(_ object: [String: Any], template: String) -> String {
        library.render(object, withTemplate: template) ?? ""
    }
}

struct AdminTemplateError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// The frame around a page: who is signed in, the navigation, the notice to show.
struct AdminChrome {
    var username: String
    var role: Role
    var csrfToken: String
    var navigation: [(title: String, link: String)]
    var pluginNavigation: [(title: String, link: String)]
    /// The path being shown, to mark its navigation entry.
    var currentPath: String
    var notice: String?
    /// The page reloads its main part this often (with JavaScript on).
    var refreshSeconds: Int?
}

/// Page values as dictionaries for the templates. Keys differ per level (`cellText`, `fieldName`, …) because mustache
/// looks a missing key up in the enclosing levels.
enum AdminMarkup {
    static func page(_ page: AdminPage, chrome: AdminChrome, requestQuery: AdminFormValues, path: String) -> [String: Any] {
        func entries(_ items: [(title: String, link: String)]) -> [[String: Any]] {
            items.map { item in
                let active = item.link == "/admin" ? chrome.currentPath == "/admin" : chrome.currentPath.hasPrefix(item.link)
                return ["navTitle": item.title, "navLink": item.link, "navActive": active]
            }
        }
        var object: [String: Any] = [
            "title": page.title, "username": chrome.username, "role": chrome.role.rawValue, "csrf": chrome.csrfToken,
            "navigation": entries(chrome.navigation), "pluginNavigation": entries(chrome.pluginNavigation),
            "hasPluginNavigation": !chrome.pluginNavigation.isEmpty,
            "sections": page.sections.map { section(for: $0, role: chrome.role, query: requestQuery, path: path) },
        ]
        if let notice = chrome.notice { object["notice"] = notice }
        if let seconds = chrome.refreshSeconds { object["refreshSeconds"] = "\(seconds)" }
        return object
    }

    static func section(for section: AdminSection, role: Role, query: AdminFormValues, path: String) -> [String: Any] {
        var object: [String: Any] = [:]
        if let heading = section.heading { object["sectionHeading"] = heading }
        switch section.content {
        case .table(let table): object["table"] = self.table(table, role: role, query: query, path: path)
        case .details(let details):
            object["details"] = ["detailRows": details.map { ["detailLabel": $0.label, "cell": cell($0.value)] }]
        case .text(let text): object["text"] = text
        case .code(let code): object["code"] = code
        case .form(let form): object["form"] = self.form(form, role: role)
        case .buttons(let buttons):
            let allowed = buttons.filter { role >= $0.role }.map(button)
            object["buttons"] = allowed
            object["hasButtons"] = !allowed.isEmpty
        case .links(let links):
            let allowed = links.filter { role >= $0.role }.map { ["linkLabel": $0.label, "linkTarget": absolute($0.link)] }
            object["links"] = allowed
            object["hasLinks"] = !allowed.isEmpty
        case .warning(let text): object["warning"] = text
        case .trustedHTML(let html): object["trustedHTML"] = html
        }
        return object
    }

    static func cell(_ cell: AdminCell) -> [String: Any] {
        var object: [String: Any] = ["cellText": cell.text, "cellState": cell.isState]
        if let link = cell.link { object["cellLink"] = absolute(link) }
        return object
    }

    static func button(_ button: AdminButton) -> [String: Any] {
        var object: [String: Any] = [
            "buttonLabel": button.label, "buttonAction": absolute(button.action), "buttonDanger": button.isDangerous,
            "buttonFields": button.fields.sorted { $0.key < $1.key }.map { ["hiddenName": $0.key, "hiddenValue": $0.value] },
        ]
        if let confirm = button.confirm { object["buttonConfirm"] = confirm }
        return object
    }

    static func table(_ table: AdminTable, role: Role, query: AdminFormValues, path: String) -> [String: Any] {
        let rows: [[String: Any]] = table.rows.map { row in
            let buttons = row.buttons.filter { role >= $0.role }.map(button)
            var object: [String: Any] = ["cells": row.cells.map(cell), "rowButtons": buttons]
            if let value = row.selectionValue { object["selectionValue"] = value }
            return object
        }
        let hasRowButtons = table.rows.contains { row in row.buttons.contains { role >= $0.role } }
        var object: [String: Any] = [
            "columns": table.columns.map { ["column": $0] }, "rows": rows, "tableEmpty": table.rows.isEmpty,
            "emptyText": table.emptyText, "hasRowButtons": hasRowButtons,
            "filterFields": table.filters.map { field($0) }, "hasFilters": !table.filters.isEmpty, "filterAction": path,
        ]
        if let cursor = table.nextCursor {
            object["nextLink"] = path + "?" + query.replacing("cursor", with: cursor).replacing("notice", with: nil).encoded
        }
        if let selection = table.selection {
            let buttons = selection.buttons.filter { role >= $0.role }.map(button)
            if !buttons.isEmpty {
                object["selection"] = [
                    "selectionField": selection.field, "selectionButtons": buttons,
                    "selectionFormID": "selection-\(selection.field)",
                ]
            }
        }
        return object
    }

    static func form(_ form: AdminForm, role: Role) -> [String: Any] {
        [
            "formAction": absolute(form.action), "formMethod": form.isQuery ? "get" : "post", "formIsQuery": form.isQuery,
            "formSubmit": form.submitLabel, "formEditable": form.isQuery || role >= form.role,
            "formErrors": form.errors.map { ["formError": $0] }, "hasFormErrors": !form.errors.isEmpty,
            "fields": form.fields.map { field($0) },
        ].merging(form.elementID.map { ["formID": $0] } ?? [:]) { first, _ in first }
    }

    static func field(_ field: AdminField) -> [String: Any] {
        let id = field.elementID ?? "field-" + field.name.map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined()
        var object: [String: Any] = [
            "fieldName": field.name, "fieldLabel": field.label, "fieldID": id, "fieldValue": field.value,
            "fieldRequired": field.isRequired, "fieldIsHidden": field.kind == .hidden, "fieldIsPassword": field.kind == .password,
            "fieldIsMulti": field.kind == .multiSelect, "fieldIsCheckbox": field.kind == .checkbox,
            "fieldIsSelect": field.kind == .select, "fieldIsTextarea": field.kind == .textarea,
            "fieldIsNumber": field.kind == .number, "fieldChecked": field.selected.contains("true"),
            "fieldHasLabel": ![.multiSelect, .checkbox, .hidden].contains(field.kind),
            "options": field.options.map { option in
                [
                    "optionValue": option.value, "optionLabel": option.label,
                    "optionSelected": field.kind == .select ? option.value == field.value : field.selected.contains(option.value),
                ] as [String: Any]
            },
        ]
        switch field.kind {
        case .text: object["fieldInputType"] = "text"
        case .password: object["fieldInputType"] = "password"
        case .number: object["fieldInputType"] = "number"
        case .dateTime: object["fieldInputType"] = "text"
        default: break
        }
        // What a viewer sees instead of the input.
        switch field.kind {
        case .checkbox: object["fieldShown"] = field.selected.contains("true") ? "yes" : "no"
        case .multiSelect: object["fieldShown"] = field.selected.sorted().joined(separator: ", ")
        case .select: object["fieldShown"] = field.options.first { $0.value == field.value }?.label ?? field.value
        default: object["fieldShown"] = field.value
        }
        if let help = field.help { object["fieldHelp"] = help }
        if let example = field.example { object["fieldExample"] = example }
        if let placeholder = field.placeholder { object["fieldPlaceholder"] = placeholder }
        if let error = field.error { object["fieldError"] = error }
        return object
    }

    /// `/admin/<path>` for a relative path; absolute paths as they are.
    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : "/admin/" + path
    }
}

extension JSONValue {
    /// Indented JSON with sorted keys, for reading.
    var prettyText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(self) else { return encodedString() }
        return String(decoding: data, as: UTF8.self)
    }
}
