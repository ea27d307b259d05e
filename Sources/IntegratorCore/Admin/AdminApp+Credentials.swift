// Credentials pages: the list, forms generated from the type's field declarations (secrets write-only), the
// connection test, and deletion. Writes need the admin role, as in the API.
import Foundation
import Hummingbird

extension AdminApp {
    func addCredentials(to router: Router<APIRequestContext>) {
        view("credentials", on: router) { request in
            let page = try await runtime.credentials.list(type: request.query["type"], page: request.page)
            let types = runtime.registry.credentialsTypes
            return AdminPage(title: "Credentials", sections: [
                .links([AdminLink("New credentials", link: "credentials/new", role: .admin)]),
                .table(AdminTable(
                    columns: ["Name", "Type", "Public fields", "Secret fields", "Updated"],
                    rows: page.items.map { view in
                        AdminRow([
                            AdminCell(view.name, link: "credentials/\(view.id)"), AdminCell(view.type),
                            AdminCell(view.publicValues.keys.sorted().map { "\($0): \(AdminFieldForms.text(view.publicValues[$0]!))" }.joined(separator: ", ")),
                            AdminCell(view.secretNames.map { "\($0): \(Secret.mask)" }.joined(separator: ", ")),
                            AdminCell(Self.time(view.updatedAt)),
                        ])
                    },
                    emptyText: "No credentials yet.",
                    filters: [AdminField("type", label: "Type", kind: .select, value: request.query["type"] ?? "",
                                         options: [("", "any")] + types.map { ($0.id, $0.name) })],
                    nextCursor: page.nextCursor)),
            ])
        }
        view("credentials/new", on: router, role: .admin) { request in
            guard let typeID = request.query["type"] else {
                return Self.choicePage(
                    "New credentials", path: "credentials/new", field: "type", label: "Type",
                    options: runtime.registry.credentialsTypes.map { ($0.id, "\($0.name) (\($0.id))") })
            }
            guard let type = runtime.registry.credentialsType(typeID) else {
                throw ServiceError(.notFound, "no credentials type '\(typeID)'")
            }
            return credentialsForm(type: type, existing: nil, posted: nil, issues: [])
        }
        action("credentials/new", on: router, role: .admin) { request in
            let typeID = request.form["type"] ?? ""
            guard let type = runtime.registry.credentialsType(typeID) else {
                throw ServiceError(.notFound, "no credentials type '\(typeID)'")
            }
            let body: JSONValue = [
                "name": .string(request.form["name"] ?? ""), "type": .string(type.id),
                "public": .object(AdminFieldForms.object(from: request.form, for: type.publicFields, prefix: "public")),
                "secret": .object(AdminFieldForms.object(from: request.form, for: type.secretFields, prefix: "secret")),
            ]
            do {
                let created = try await runtime.credentials.create(body)
                return .redirect("credentials/\(created.id)", notice: "Credentials '\(created.name)' created.")
            } catch let failure as ValidationFailure {
                return .page(credentialsForm(type: type, existing: nil, posted: request.form, issues: failure.issues))
            } catch let error as ServiceError where error.kind == .conflict {
                return .page(credentialsForm(type: type, existing: nil, posted: request.form, issues: [.init(field: "name", message: error.message)]))
            }
        }
        view("credentials/:id", on: router) { request in
            let view = try await runtime.credentials.get(id: try request.parameter("id"))
            guard let type = runtime.registry.credentialsType(view.type) else {
                throw ServiceError(.unsupported, "credentials type '\(view.type)' is not registered in this build")
            }
            return credentialsPage(view, type: type, posted: nil, issues: [])
        }
        action("credentials/:id", on: router, role: .admin) { request in
            let id = try request.parameter("id")
            let view = try await runtime.credentials.get(id: id)
            guard let type = runtime.registry.credentialsType(view.type) else {
                throw ServiceError(.unsupported, "credentials type '\(view.type)' is not registered in this build")
            }
            var body: [String: JSONValue] = [
                "public": .object(AdminFieldForms.object(from: request.form, for: type.publicFields, prefix: "public"))
            ]
            if let name = request.form["name"] { body["name"] = .string(name) }
            let secrets = AdminFieldForms.object(from: request.form, for: type.secretFields, prefix: "secret")
            if !secrets.isEmpty { body["secret"] = .object(secrets) }
            do {
                let updated = try await runtime.credentials.update(id: id, .object(body))
                return .redirect("credentials/\(updated.id)", notice: "Saved.")
            } catch let failure as ValidationFailure {
                return .page(credentialsPage(view, type: type, posted: request.form, issues: failure.issues))
            } catch let error as ServiceError where error.kind == .conflict {
                return .page(credentialsPage(view, type: type, posted: request.form, issues: [.init(field: "name", message: error.message)]))
            }
        }
        action("credentials/:id/test", on: router, role: .admin) { request in
            let id = try request.parameter("id")
            let result = try await runtime.credentials.test(id: id, logger: runtime.logger)
            return .redirect("credentials/\(id)", notice: "Connection test \(result.ok ? "passed" : "failed"): \(result.message)")
        }
        action("credentials/:id/delete", on: router, role: .admin) { request in
            try await runtime.credentials.delete(id: try request.parameter("id"))
            return .redirect("credentials", notice: "Credentials deleted.")
        }
    }

    /// The form for new credentials of `type`.
    func credentialsForm(type: any CredentialsType, existing: CredentialsView?, posted: AdminFormValues?, issues: [FieldIssue]) -> AdminPage {
        let form = AdminForm(
            action: "credentials/new",
            fields: [
                AdminField("type", label: "Type", kind: .hidden, value: type.id),
                AdminField("name", label: "Name", value: posted?["name"] ?? "", help: "Unique; integrations refer to it.",
                           isRequired: true, error: issues.first { $0.field == "name" }?.message),
            ] + AdminFieldForms.inputs(for: type.publicFields, prefix: "public", values: [:], posted: posted, issues: issues)
                + AdminFieldForms.inputs(for: type.secretFields, prefix: "secret", values: [:], posted: posted, issues: issues),
            submitLabel: "Create", role: .admin, errors: Self.unplaced(issues, among: ["name", "public.", "secret."]))
        return AdminPage(title: "New \(type.name) credentials", sections: [.form(form)])
    }

    func credentialsPage(_ view: CredentialsView, type: any CredentialsType, posted: AdminFormValues?, issues: [FieldIssue]) -> AdminPage {
        var details = [
            AdminDetail("Type", AdminCell("\(type.name) (\(type.id))")),
            AdminDetail("Created", AdminCell(Self.time(view.createdAt))), AdminDetail("Updated", AdminCell(Self.time(view.updatedAt))),
        ]
        for name in view.publicValues.keys.sorted() {
            details.append(AdminDetail(type.publicFields[name]?.title ?? name, AdminCell(AdminFieldForms.text(view.publicValues[name]!))))
        }
        for field in type.secretFields.fields {
            details.append(AdminDetail(field.title, AdminCell(view.secretNames.contains(field.name) ? Secret.mask : "not set")))
        }
        var buttons: [AdminButton] = []
        if type is any ConnectionTesting { buttons.append(AdminButton("Test connection", action: "credentials/\(view.id)/test", role: .admin)) }
        buttons.append(AdminButton(
            "Delete", action: "credentials/\(view.id)/delete", role: .admin, confirm: "Delete the credentials '\(view.name)'?",
            isDangerous: true))
        let form = AdminForm(
            action: "credentials/\(view.id)",
            fields: [AdminField("name", label: "Name", value: posted?["name"] ?? view.name, isRequired: true,
                                error: issues.first { $0.field == "name" }?.message)]
                + AdminFieldForms.inputs(for: type.publicFields, prefix: "public", values: view.publicValues, posted: posted, issues: issues)
                + AdminFieldForms.inputs(for: type.secretFields, prefix: "secret", values: [:], posted: posted, issues: issues, keepsSecrets: true),
            submitLabel: "Save", role: .admin, errors: Self.unplaced(issues, among: ["name", "public.", "secret."]))
        return AdminPage(title: view.name, sections: [
            .details(details), .buttons(buttons), .form(form, heading: "Edit"),
        ])
    }

    /// The first step of a form that depends on a choice (a credentials type, a provider): pick it, then see the form.
    static func choicePage(_ title: String, path: String, field: String, label: String, options: [(value: String, label: String)]) -> AdminPage {
        AdminPage(title: title, sections: [.form(AdminForm(
            action: path, fields: [AdminField(field, label: label, kind: .select, options: options, isRequired: true)],
            submitLabel: "Next", isQuery: true))])
    }

    /// Issues whose field no input shows, as sentences for the top of the form.
    static func unplaced(_ issues: [FieldIssue], among prefixes: [String]) -> [String] {
        issues.filter { issue in !prefixes.contains { issue.field == $0 || ($0.hasSuffix(".") && issue.field.hasPrefix($0)) } }
            .map(\.description)
    }
}
