// Integrations pages: the list with each one's last run, forms generated from the provider's config fields, run now,
// the records and change events a fetch stored, and resetting the fetch state.
import Foundation
import Hummingbird

extension AdminApp {
    func addIntegrations(to router: Router<APIRequestContext>) {
        view("integrations", on: router) { request in
            let filter = IntegrationFilter(
                provider: request.query["provider"], active: request.query["active"].map { $0 == "true" })
            let page = try await runtime.integrations.list(filter, page: request.page)
            let lastRuns = try await queries.lastRuns(of: page.items.map(\.id))
            return AdminPage(title: "Integrations", sections: [
                .links([AdminLink("New integration", link: "integrations/new", role: .admin)]),
                .table(AdminTable(
                    columns: ["Name", "Provider", "Active", "Queue", "Last run", "State"],
                    rows: page.items.map { integration in
                        let run = lastRuns[integration.id]
                        return AdminRow([
                            AdminCell(integration.name, link: "integrations/\(integration.id)"), AdminCell(integration.provider),
                            AdminCell(integration.active ? "yes" : "no"), AdminCell(integration.queue),
                            run.map { AdminCell(Self.time($0.finishedAt ?? $0.enqueuedAt), link: "tasks/\($0.id)") } ?? "never",
                            run.map { .state($0.state.rawValue) } ?? "—",
                        ], buttons: [AdminButton("Run now", action: "integrations/\(integration.id)/run")])
                    },
                    emptyText: "No integrations yet.",
                    filters: [
                        AdminField("provider", label: "Provider", kind: .select, value: request.query["provider"] ?? "",
                                   options: [("", "any")] + runtime.registry.providers.map { ($0.id, $0.name) }),
                        AdminField("active", label: "Active", kind: .select, value: request.query["active"] ?? "",
                                   options: [("", "any"), ("true", "active"), ("false", "paused")]),
                    ],
                    nextCursor: page.nextCursor)),
            ])
        }
        view("integrations/new", on: router, role: .admin) { request in
            guard let providerID = request.query["provider"] else {
                return Self.choicePage(
                    "New integration", path: "integrations/new", field: "provider", label: "Provider",
                    options: runtime.registry.providers.map { ($0.id, "\($0.name) (\($0.id))") })
            }
            guard let provider = runtime.registry.provider(providerID) else { throw ServiceError(.notFound, "no provider '\(providerID)'") }
            return try await integrationForm(provider: provider, existing: nil, posted: nil, issues: [])
        }
        action("integrations/new", on: router, role: .admin) { request in
            let providerID = request.form["provider"] ?? ""
            guard let provider = runtime.registry.provider(providerID) else { throw ServiceError(.notFound, "no provider '\(providerID)'") }
            var body = integrationBody(request.form, provider: provider)
            body["provider"] = .string(provider.id)
            do {
                let created = try await runtime.integrations.create(.object(body))
                return .redirect("integrations/\(created.id)", notice: "Integration '\(created.name)' created.")
            } catch let failure as ValidationFailure {
                return .page(try await integrationForm(provider: provider, existing: nil, posted: request.form, issues: failure.issues))
            } catch let error as ServiceError where error.kind == .conflict {
                return .page(try await integrationForm(
                    provider: provider, existing: nil, posted: request.form, issues: [.init(field: "name", message: error.message)]))
            }
        }
        view("integrations/:id", on: router) { request in
            try await integrationPage(try await runtime.integrations.get(id: try request.parameter("id")), posted: nil, issues: [])
        }
        action("integrations/:id", on: router, role: .admin) { request in
            let integration = try await runtime.integrations.get(id: try request.parameter("id"))
            guard let provider = runtime.registry.provider(integration.provider) else {
                throw ServiceError(.unsupported, "provider '\(integration.provider)' is not registered in this build")
            }
            do {
                _ = try await runtime.integrations.update(id: integration.id, .object(integrationBody(request.form, provider: provider)))
                return .redirect("integrations/\(integration.id)", notice: "Saved.")
            } catch let failure as ValidationFailure {
                return .page(try await integrationPage(integration, posted: request.form, issues: failure.issues))
            } catch let error as ServiceError where error.kind == .conflict {
                return .page(try await integrationPage(integration, posted: request.form, issues: [.init(field: "name", message: error.message)]))
            }
        }
        action("integrations/:id/run", on: router) { request in
            let message = try await runtime.fetches.enqueue(integrationID: try request.parameter("id"))
            return .redirect("tasks/\(message.id)", notice: "Fetch enqueued.")
        }
        action("integrations/:id/reset-state", on: router) { request in
            let id = try request.parameter("id")
            let reset = try await runtime.records.resetState(integrationID: id, stream: request.form["stream"])
            return .redirect("integrations/\(id)", notice: "Fetch state reset (\(reset) stream\(reset == 1 ? "" : "s")); the next fetch starts over.")
        }
        action("integrations/:id/delete", on: router, role: .admin) { request in
            try await runtime.integrations.delete(id: try request.parameter("id"))
            return .redirect("integrations", notice: "Integration deleted.")
        }
        view("integrations/:id/records", on: router) { request in
            let integration = try await runtime.integrations.get(id: try request.parameter("id"))
            let page = try await runtime.records.list(
                integrationID: integration.id, RecordFilter(stream: request.query["stream"]), page: request.page)
            return AdminPage(title: "Records of \(integration.name)", sections: [
                .table(recordsTable(page.items, nextCursor: page.nextCursor, filters: [
                    AdminField("stream", label: "Stream", value: request.query["stream"] ?? ""),
                ])),
            ])
        }
        view("integrations/:id/events", on: router) { request in
            let integration = try await runtime.integrations.get(id: try request.parameter("id"))
            let page = try await runtime.records.events(
                EventFilter(type: request.query["type"], integrationID: integration.id), page: request.page)
            return AdminPage(title: "Change events of \(integration.name)", sections: [
                .table(eventsTable(page.items, nextCursor: page.nextCursor, filters: [
                    AdminField("type", label: "Type", value: request.query["type"] ?? "", placeholder: "demo.items.created"),
                ])),
            ])
        }
    }

    /// The API body a posted integration form stands for.
    func integrationBody(_ form: AdminFormValues, provider: any ProviderBackend) -> [String: JSONValue] {
        var body: [String: JSONValue] = [
            "config": .object(AdminFieldForms.object(from: form, for: provider.configFields, prefix: "config")),
            "active": .bool(form.has("active")),
        ]
        if let name = form["name"] { body["name"] = .string(name) }
        body["credentials"] = form["credentials"].map(JSONValue.string) ?? .null
        if let queue = form["queue"] { body["queue"] = .string(queue) }
        if let priority = form["priority"] { body["priority"] = Int(priority).map { .number(Double($0)) } ?? .string(priority) }
        body["max_attempts"] = form["max_attempts"].map { text in Int(text).map { .number(Double($0)) } ?? .string(text) } ?? .null
        return body
    }

    func integrationForm(provider: any ProviderBackend, existing: Integration?, posted: AdminFormValues?, issues: [FieldIssue])
        async throws -> AdminPage
    {
        let fields = try await integrationFields(provider: provider, existing: existing, posted: posted, issues: issues)
        let form = AdminForm(
            action: existing.map { "integrations/\($0.id)" } ?? "integrations/new",
            fields: (existing == nil ? [AdminField("provider", label: "Provider", kind: .hidden, value: provider.id)] : []) + fields,
            submitLabel: existing == nil ? "Create" : "Save", role: .admin,
            errors: Self.unplaced(issues, among: ["name", "credentials", "config.", "queue", "priority", "max_attempts", "active"]))
        return AdminPage(title: "New \(provider.name) integration", sections: [.form(form)])
    }

    private func integrationFields(provider: any ProviderBackend, existing: Integration?, posted: AdminFormValues?, issues: [FieldIssue])
        async throws -> [AdminField]
    {
        func issue(_ field: String) -> String? { issues.first { $0.field == field }?.message }
        func value(_ name: String, _ stored: String?) -> String { posted.map { $0[name] ?? "" } ?? stored ?? "" }
        var fields = [
            AdminField("name", label: "Name", value: value("name", existing?.name), isRequired: true, error: issue("name")),
        ]
        if !provider.allowedCredentialTypes.isEmpty {
            var options: [(value: String, label: String)] = [("", "(none)")]
            for type in provider.allowedCredentialTypes {
                let page = try await runtime.credentials.list(type: type, page: PageRequest(limit: PageRequest.maximumLimit))
                options += page.items.map { ($0.id, "\($0.name) (\($0.type))") }
            }
            fields.append(AdminField(
                "credentials", label: "Credentials", kind: .select, value: value("credentials", existing?.credentialsID), options: options,
                help: "Of type \(provider.allowedCredentialTypes.joined(separator: " or ")).", isRequired: true, error: issue("credentials")))
        }
        fields += AdminFieldForms.inputs(
            for: provider.configFields, prefix: "config", values: existing?.config ?? [:], posted: posted, issues: issues)
        let active = posted.map { $0.has("active") } ?? existing?.active ?? true
        fields += [
            AdminField("active", label: "Active", kind: .checkbox, selected: active ? ["true"] : [], error: issue("active")),
            AdminField("queue", label: "Queue", value: value("queue", existing?.queue ?? IntegrationsService.defaultQueue), error: issue("queue")),
            AdminField(
                "priority", label: "Priority", kind: .number,
                value: value("priority", String(existing?.priority ?? IntegrationsService.defaultPriority)),
                help: "0 to 9; 9 runs first.", error: issue("priority")),
            AdminField(
                "max_attempts", label: "Attempts", kind: .number, value: value("max_attempts", existing?.maxAttempts.map(String.init)),
                help: "How many times a failing fetch is tried (1 to 20); blank for the task's own policy.", error: issue("max_attempts")),
        ]
        return fields
    }

    func integrationPage(_ integration: Integration, posted: AdminFormValues?, issues: [FieldIssue]) async throws -> AdminPage {
        let provider = runtime.registry.provider(integration.provider)
        async let records = runtime.records.list(integrationID: integration.id, RecordFilter(), page: PageRequest(limit: 10))
        async let recordCount = runtime.records.count(integrationID: integration.id)
        async let events = runtime.records.events(EventFilter(integrationID: integration.id), page: PageRequest(limit: 10))
        async let state = runtime.records.state(integrationID: integration.id)
        async let runs = queries.runs(AdminRunFilter(integrationID: integration.id), before: nil, limit: 10)
        var sections: [AdminSection] = [
            .details([
                AdminDetail("Provider", AdminCell(provider.map { "\($0.name) (\($0.id))" } ?? integration.provider)),
                AdminDetail("Credentials", integration.credentialsID.map { AdminCell($0, link: "credentials/\($0)") } ?? "none"),
                AdminDetail("Active", .state(integration.active ? "active" : "paused")),
                AdminDetail("Queue", AdminCell("\(integration.queue), priority \(integration.priority)")),
                AdminDetail("Created", AdminCell(Self.time(integration.createdAt))),
            ]),
            .buttons([
                AdminButton("Run now", action: "integrations/\(integration.id)/run"),
                AdminButton(
                    "Reset state", action: "integrations/\(integration.id)/reset-state",
                    confirm: "Forget where fetches got to? The next fetch reads everything again.", isDangerous: true),
                AdminButton(
                    "Delete", action: "integrations/\(integration.id)/delete", role: .admin,
                    confirm: "Delete the integration '\(integration.name)' and its records?", isDangerous: true),
            ]),
            .json(.object(integration.config), heading: "Config"),
        ]
        let recentRuns = try await runs.runs
        sections.append(.links([AdminLink("All runs of this integration", link: "tasks?integration=\(integration.id)")]))
        sections.append(.table(runsTable(recentRuns, selectable: false), heading: "Latest runs"))
        let count = try await recordCount
        sections.append(.table(recordsTable(try await records.items, nextCursor: nil, filters: []), heading: "Records (\(count))"))
        sections.append(.links([
            AdminLink("All records", link: "integrations/\(integration.id)/records"),
            AdminLink("All change events", link: "integrations/\(integration.id)/events"),
        ]))
        sections.append(.table(eventsTable(try await events.items, nextCursor: nil, filters: []), heading: "Latest change events"))
        sections.append(.table(AdminTable(
            columns: ["Stream", "Cursor", "Updated"],
            rows: try await state.map { cursor in
                AdminRow([AdminCell(cursor.stream), AdminCell(cursor.cursor.encodedString()), AdminCell(Self.time(cursor.updatedAt))],
                         buttons: [AdminButton("Reset", action: "integrations/\(integration.id)/reset-state", fields: ["stream": cursor.stream],
                                               confirm: "Forget where the stream \(cursor.stream) got to?", isDangerous: true)])
            }, emptyText: "No fetch state: the next fetch starts from the beginning."), heading: "Fetch state"))
        if let provider {
            let fields = try await integrationFields(provider: provider, existing: integration, posted: posted, issues: issues)
            sections.append(.form(AdminForm(
                action: "integrations/\(integration.id)", fields: fields, submitLabel: "Save", role: .admin,
                errors: Self.unplaced(issues, among: ["name", "credentials", "config.", "queue", "priority", "max_attempts", "active"])),
                heading: "Edit"))
        }
        return AdminPage(title: integration.name, sections: sections)
    }

    func recordsTable(_ records: [StoredRecord], nextCursor: String?, filters: [AdminField]) -> AdminTable {
        AdminTable(
            columns: ["Stream", "External id", "Data", "First seen", "Updated"],
            rows: records.map { record in
                AdminRow([
                    AdminCell(record.stream), AdminCell(record.externalID), AdminCell(Self.excerpt(record.data)),
                    AdminCell(Self.time(record.firstSeenAt)), AdminCell(Self.time(record.updatedAt)),
                ])
            }, emptyText: "No records yet.", filters: filters, nextCursor: nextCursor)
    }

    func eventsTable(_ events: [ChangeEvent], nextCursor: String?, filters: [AdminField]) -> AdminTable {
        AdminTable(
            columns: ["Type", "External id", "Data", "Created"],
            rows: events.map { event in
                AdminRow([AdminCell(event.type), AdminCell(event.externalID), AdminCell(Self.excerpt(event.data)), AdminCell(Self.time(event.createdAt))])
            }, emptyText: "No change events yet.", filters: filters, nextCursor: nextCursor)
    }

    /// The start of a JSON value, for a table cell.
    static func excerpt(_ value: JSONValue, length: Int = 160) -> String {
        let text = value.encodedString()
        return text.count > length ? String(text.prefix(length)) + "…" : text
    }
}
