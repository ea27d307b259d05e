// Schedules pages: the list with next and last runs, enable/disable/run now on one or a selection, and the form for
// interval, crontab-with-zone and clocked timings with a preview of the next fire times as you type.
import Foundation
import Hummingbird

extension AdminApp {
    static let previewCount = 10

    func addSchedules(to router: Router<APIRequestContext>) {
        view("schedules", on: router) { request in
            let page = try await runtime.schedules.list(
                enabled: request.query["enabled"].map { $0 == "true" }, integrationID: request.query["integration"], page: request.page)
            return AdminPage(title: "Schedules", sections: [
                .links([AdminLink("New schedule", link: "schedules/new", role: .operator)]),
                .table(AdminTable(
                    columns: ["Name", "Runs", "Timing", "State", "Next run", "Last run", "Fired"],
                    rows: page.items.map { schedule in
                        AdminRow([
                            AdminCell(schedule.name, link: "schedules/\(schedule.id)"),
                            schedule.integrationID.map { AdminCell("integration", link: "integrations/\($0)") } ?? AdminCell(schedule.taskName),
                            AdminCell(Self.describe(schedule.timing)), .state(schedule.enabled ? "enabled" : "disabled"),
                            AdminCell(schedule.nextRunAt.map { $0.iso8601(in: schedule.timing.displayZone) } ?? "—"),
                            schedule.lastTaskID.map { AdminCell(Self.time(schedule.lastRunAt), link: "tasks/\($0)") } ?? "never",
                            AdminCell("\(schedule.totalRunCount)"),
                        ], buttons: [
                            AdminButton("Run now", action: "schedules/run", fields: ["id": schedule.id]),
                            schedule.enabled
                                ? AdminButton("Disable", action: "schedules/disable", fields: ["id": schedule.id])
                                : AdminButton("Enable", action: "schedules/enable", fields: ["id": schedule.id]),
                        ], selectionValue: schedule.id)
                    },
                    emptyText: "No schedules yet.",
                    filters: [AdminField("enabled", label: "State", kind: .select, value: request.query["enabled"] ?? "",
                                         options: [("", "any"), ("true", "enabled"), ("false", "disabled")])],
                    nextCursor: page.nextCursor,
                    selection: AdminSelection(buttons: [
                        AdminButton("Enable", action: "schedules/enable"), AdminButton("Disable", action: "schedules/disable"),
                        AdminButton("Run now", action: "schedules/run"),
                    ]))),
            ])
        }
        for (verb, enabled) in [("enable", true), ("disable", false)] {
            action("schedules/\(verb)", on: router) { request in
                let ids = request.form.all("id")
                guard !ids.isEmpty else { return .redirect("schedules", notice: "Select at least one schedule.") }
                for id in ids { _ = try await runtime.schedules.update(id: id, ["enabled": .bool(enabled)]) }
                return .redirect(Self.back(request, default: "schedules"), notice: "\(ids.count) schedule\(ids.count == 1 ? "" : "s") \(verb)d.")
            }
        }
        action("schedules/run", on: router) { request in
            let ids = request.form.all("id")
            guard !ids.isEmpty else { return .redirect("schedules", notice: "Select at least one schedule.") }
            var last: TaskMessage?
            for id in ids { last = try await runtime.schedules.runNow(id: id) }
            if ids.count == 1, let last { return .redirect("tasks/\(last.id)", notice: "Schedule fired; this is its task.") }
            return .redirect("tasks", notice: "\(ids.count) schedules fired.")
        }
        view("schedules/new", on: router, role: .operator) { request in
            try await scheduleForm(existing: nil, posted: request.query.pairs.isEmpty ? nil : request.query, issues: [])
        }
        action("schedules/new", on: router) { request in
            do {
                let schedule = try await runtime.schedules.create(.object(try scheduleBody(request.form)))
                return .redirect("schedules/\(schedule.id)", notice: "Schedule '\(schedule.name)' created.")
            } catch let failure as ValidationFailure {
                return .page(try await scheduleForm(existing: nil, posted: request.form, issues: failure.issues))
            } catch let error as ServiceError where error.kind == .conflict {
                return .page(try await scheduleForm(existing: nil, posted: request.form, issues: [.init(field: "name", message: error.message)]))
            }
        }
        view("schedules/:id", on: router) { request in
            try await scheduleForm(existing: try await runtime.schedules.get(id: try request.parameter("id")), posted: nil, issues: [])
        }
        action("schedules/:id", on: router) { request in
            let schedule = try await runtime.schedules.get(id: try request.parameter("id"))
            do {
                var body = try scheduleBody(request.form)
                // Unchanged targets are left out, so a schedule's own queue and arguments stay as they are.
                if body["integration"]?.stringValue == schedule.integrationID { body["integration"] = nil }
                _ = try await runtime.schedules.update(id: schedule.id, .object(body))
                return .redirect("schedules/\(schedule.id)", notice: "Saved.")
            } catch let failure as ValidationFailure {
                return .page(try await scheduleForm(existing: schedule, posted: request.form, issues: failure.issues))
            } catch let error as ServiceError where error.kind == .conflict {
                return .page(try await scheduleForm(existing: schedule, posted: request.form, issues: [.init(field: "name", message: error.message)]))
            }
        }
        action("schedules/:id/delete", on: router) { request in
            try await runtime.schedules.delete(id: try request.parameter("id"))
            return .redirect("schedules", notice: "Schedule deleted.")
        }
        router.get("admin/schedules/preview.json") { request, _ in
            guard try await session(of: request) != nil else { return Self.plain(.unauthorized, "log in first") }
            let query = AdminFormValues(urlEncoded: Substring(request.uri.query ?? ""))
            return Self.previewJSON(query, now: runtime.clock.now()).response()
        }
    }

    /// The next fire times of the timing a (partly typed) form describes, or the problem with it.
    static func previewJSON(_ form: AdminFormValues, now: Date) -> JSONValue {
        switch timing(from: form) {
        case .failure(let failure):
            return ["error": .string(failure.description)]
        case .success(let timing):
            var anchor = now
            if let text = form["start_time"] {
                guard let start = Date(iso8601: text) else { return ["error": .string("start_time: \(Date.iso8601Expectation)")] }
                anchor = start
            }
            var times: [Date] = []
            if case .clocked(let at) = timing {
                times = [at]
            } else {
                var cursor = timing.nextFireTime(after: max(now, anchor.addingTimeInterval(-0.001)), anchor: anchor)
                while let time = cursor, times.count < previewCount {
                    times.append(time)
                    cursor = timing.nextFireTime(after: time, anchor: anchor)
                }
            }
            let zone = timing.displayZone
            return ["timezone": .string(zone.identifier), "times": .array(times.map { .string($0.iso8601(in: zone)) })]
        }
    }

    /// The timing a form describes: `timing` names the kind, `every`, `expression` + `timezone`, or `at` its value.
    static func timing(from form: AdminFormValues) -> Result<ScheduleTiming, ValidationFailure> {
        switch form["timing"] ?? "crontab" {
        case "interval":
            guard let text = form["every"], let every = Int(text), (1...31_622_400).contains(every) else {
                return .failure(problem(field: "every", message: "must be a whole number of seconds from 1 to 31622400"))
            }
            return .success(.interval(seconds: every))
        case "clocked":
            guard let text = form["at"], let at = Date(iso8601: text) else {
                return .failure(problem(field: "at", message: Date.iso8601Expectation))
            }
            return .success(.clocked(at))
        default:
            guard let text = form["expression"] else { return .failure(problem(field: "expression", message: "is required")) }
            let expression: CronExpression
            do {
                expression = try CronExpression(text)
            } catch {
                return .failure(problem(field: "expression", message: error.message))
            }
            let zoneName = form["timezone"] ?? "UTC"
            guard let zone = TimeZone(identifier: zoneName) else {
                return .failure(problem(field: "timezone", message: "unknown time zone '\(zoneName)'; use an IANA name such as Europe/London"))
            }
            return .success(.crontab(expression, timeZone: zone))
        }
    }

    private static func problem(field: String, message: String) -> ValidationFailure {
        ValidationFailure([FieldIssue(field: field, message: message)])
    }

    /// The API body a posted schedule form stands for.
    func scheduleBody(_ form: AdminFormValues) throws -> [String: JSONValue] {
        var body: [String: JSONValue] = [:]
        var issues: [FieldIssue] = []
        if let name = form["name"] { body["name"] = .string(name) }
        if let integration = form["integration"] {
            body["integration"] = .string(integration)
        } else {
            if let task = form["task"] { body["task"] = .string(task) }
            if let args = form["args"] {
                if let value = try? JSONValue.parse(args), value.objectValue != nil {
                    body["args"] = value
                } else {
                    issues.append(FieldIssue(field: "args", message: "must be a JSON object, such as {\"key\": \"value\"}"))
                }
            }
            if let queue = form["queue"] { body["queue"] = .string(queue) }
            if let priority = form["priority"] { body["priority"] = Int(priority).map { .number(Double($0)) } ?? .string(priority) }
        }
        switch form["timing"] ?? "crontab" {
        case "interval":
            body["interval"] = ["every": form["every"].map { Int($0).map { .number(Double($0)) } ?? .string($0) } ?? .null]
        case "clocked":
            body["clocked"] = ["at": form["at"].map(JSONValue.string) ?? .null]
        default:
            body["crontab"] = [
                "expression": form["expression"].map(JSONValue.string) ?? .null, "timezone": .string(form["timezone"] ?? "UTC"),
            ]
        }
        body["enabled"] = .bool(form.has("enabled"))
        for choice in ["misfire", "overlap"] { if let value = form[choice] { body[choice] = .string(value) } }
        if !issues.isEmpty { throw ValidationFailure(issues) }
        return body
    }

    func scheduleForm(existing: Schedule?, posted: AdminFormValues?, issues: [FieldIssue]) async throws -> AdminPage {
        func issue(_ names: String...) -> String? {
            issues.first { issue in names.contains { issue.field == $0 || issue.field.hasPrefix($0 + ".") } }?.message
        }
        func value(_ name: String, _ stored: String?) -> String { posted.map { $0[name] ?? "" } ?? stored ?? "" }
        let integrations = try await runtime.integrations.list(IntegrationFilter(), page: PageRequest(limit: PageRequest.maximumLimit))
        var stored: [String: String] = ["timing": "crontab", "timezone": "UTC"]
        if let existing {
            stored["name"] = existing.name
            stored["integration"] = existing.integrationID
            stored["task"] = existing.integrationID == nil ? existing.taskName : nil
            stored["args"] = existing.integrationID == nil ? existing.arguments.encodedString() : nil
            stored["queue"] = existing.queue
            stored["priority"] = String(existing.priority)
            stored["misfire"] = existing.misfire.rawValue
            stored["overlap"] = existing.overlap.rawValue
            stored["timing"] = existing.timing.kind
            switch existing.timing {
            case .interval(let seconds): stored["every"] = String(seconds)
            case .crontab(let expression, let zone):
                stored["expression"] = expression.description
                stored["timezone"] = zone.identifier
            case .clocked(let at): stored["at"] = at.apiString
            }
        }
        let enabled = posted.map { $0.has("enabled") } ?? existing?.enabled ?? true
        let fields: [AdminField] = [
            AdminField("name", label: "Name", value: value("name", stored["name"]), isRequired: true, error: issue("name")),
            AdminField(
                "integration", label: "Integration", kind: .select, value: value("integration", stored["integration"]),
                options: [("", "(none: run a task)")] + integrations.items.map { ($0.id, $0.name) },
                help: "Fetch this integration on its queue and priority; or leave it as none and pick a task.", error: issue("integration")),
            AdminField(
                "task", label: "Task", kind: .select, value: value("task", stored["task"]),
                options: [("", "(none)")] + runtime.registry.taskNames.map { ($0, $0) }, error: issue("task")),
            AdminField("args", label: "Task arguments", kind: .textarea, value: value("args", stored["args"]), help: "A JSON object.",
                       example: "{\"key\": \"value\"}", error: issue("args")),
            AdminField(
                "timing", label: "Timing", kind: .select, value: value("timing", stored["timing"]),
                options: [("crontab", "crontab in a time zone"), ("interval", "every N seconds"), ("clocked", "once, at a time")],
                isRequired: true, elementID: "schedule-timing"),
            AdminField("expression", label: "Cron expression", value: value("expression", stored["expression"]),
                       help: "Five fields: minute hour day-of-month month day-of-week.", example: "*/5 * * * *",
                       error: issue("crontab.expression", "expression", "crontab", "interval")),
            AdminField("timezone", label: "Time zone", value: value("timezone", stored["timezone"]), help: "An IANA name.",
                       example: "America/Sao_Paulo", error: issue("crontab.timezone", "timezone")),
            AdminField("every", label: "Every (seconds)", kind: .number, value: value("every", stored["every"]),
                       error: issue("interval.every", "every")),
            AdminField("at", label: "At", kind: .dateTime, value: value("at", stored["at"]), example: "2026-12-01T09:00:00Z",
                       error: issue("clocked.at", "at")),
            AdminField("enabled", label: "Enabled", kind: .checkbox, selected: enabled ? ["true"] : []),
            AdminField("queue", label: "Queue", value: value("queue", stored["queue"]),
                       help: "For tasks; an integration's schedule uses the integration's queue.",
                       placeholder: IntegrationsService.defaultQueue, error: issue("queue")),
            AdminField("priority", label: "Priority", kind: .number, value: value("priority", stored["priority"]),
                       help: "0 to 9; 9 runs first.", placeholder: String(IntegrationsService.defaultPriority), error: issue("priority")),
            AdminField("misfire", label: "After downtime", kind: .select, value: value("misfire", stored["misfire"] ?? MisfirePolicy.runOnce.rawValue),
                       options: MisfirePolicy.allCases.map { ($0.rawValue, $0.rawValue) }, error: issue("misfire")),
            AdminField("overlap", label: "While the previous run is active", kind: .select,
                       value: value("overlap", stored["overlap"] ?? OverlapPolicy.skip.rawValue),
                       options: OverlapPolicy.allCases.map { ($0.rawValue, $0.rawValue) }, error: issue("overlap")),
        ]
        let placed = ["name", "integration", "task", "args", "crontab", "interval", "clocked", "queue", "priority", "misfire", "overlap"]
        let form = AdminForm(
            action: existing.map { "schedules/\($0.id)" } ?? "schedules/new", fields: fields,
            submitLabel: existing == nil ? "Create" : "Save", role: .operator, errors: Self.unplaced(issues, among: placed),
            elementID: "schedule-form")
        // The preview of what the form says now: drawn here for browsers without JavaScript, refreshed as you type.
        var previewValues = AdminFormValues(stored.map { ($0.key, $0.value) })
        if let posted { previewValues = posted }
        let preview = Self.previewJSON(previewValues, now: runtime.clock.now())
        let previewHTML = Self.previewMarkup(preview)
        var sections: [AdminSection] = []
        if let existing {
            sections.append(.details([
                AdminDetail("State", .state(existing.enabled ? "enabled" : "disabled")),
                AdminDetail("Next run", AdminCell(existing.nextRunAt.map { $0.iso8601(in: existing.timing.displayZone) } ?? "—")),
                AdminDetail("Last run", existing.lastTaskID.map { AdminCell(Self.time(existing.lastRunAt), link: "tasks/\($0)") } ?? "never"),
                AdminDetail("Fired", AdminCell("\(existing.totalRunCount) times")),
            ]))
            sections.append(.buttons([
                AdminButton("Run now", action: "schedules/run", fields: ["id": existing.id]),
                existing.enabled
                    ? AdminButton("Disable", action: "schedules/disable", fields: ["id": existing.id, "back": "schedules/\(existing.id)"])
                    : AdminButton("Enable", action: "schedules/enable", fields: ["id": existing.id, "back": "schedules/\(existing.id)"]),
                AdminButton("Delete", action: "schedules/\(existing.id)/delete", confirm: "Delete the schedule '\(existing.name)'?", isDangerous: true),
            ]))
            sections.append(.links([AdminLink("Runs of this schedule", link: "tasks?schedule=\(existing.id)")]))
        }
        // Above the form, so it stays in sight while the timing is typed.
        sections.append(.trustedHTML(previewHTML, heading: "Preview"))
        sections.append(.form(form, heading: existing == nil ? nil : "Edit"))
        return AdminPage(title: existing?.name ?? "New schedule", sections: sections)
    }

    /// The preview list as markup, every value escaped.
    static func previewMarkup(_ preview: JSONValue) -> String {
        if let error = preview["error"]?.stringValue {
            return "<div id=\"schedule-preview\" class=\"preview field-error\">\(escape(error))</div>"
        }
        let zone = preview["timezone"]?.stringValue ?? "UTC"
        let items = (preview["times"]?.arrayValue ?? []).compactMap(\.stringValue).map { "<li>\(escape($0))</li>" }.joined()
        return "<div id=\"schedule-preview\" class=\"preview\"><strong>Next fire times (\(escape(zone))):</strong><ol>\(items)</ol></div>"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
            .replacingOccurrences(of: "'", with: "&#39;")
    }

    static func describe(_ timing: ScheduleTiming) -> String {
        switch timing {
        case .interval(let seconds): "every \(seconds) s"
        case .crontab(let expression, let zone): "\(expression.description) (\(zone.identifier))"
        case .clocked(let at): "once at \(at.apiString)"
        }
    }

    /// Where a button asked to return to (`back`), if it is an admin path.
    static func back(_ request: AdminPageRequest, default fallback: String) -> String {
        guard let back = request.form["back"], !back.hasPrefix("/"), !back.contains("//"), !back.contains(":") else { return fallback }
        return back
    }
}
