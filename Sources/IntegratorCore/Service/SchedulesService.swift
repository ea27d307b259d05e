// Creating, changing, firing and previewing schedules, shared by the API and the CLI.
import Foundation

/// The schedules use cases.
public struct SchedulesService: Sendable {
    let store: ScheduleStore
    let integrations: IntegrationStore
    let dispatcher: TaskDispatcher
    let registry: PluginRegistry
    let wakeup: BeatWakeup
    let clock: any TimeSource

    /// The task an integration's schedule runs.
    public static let fetchTask = "integration.fetch"
    public static let previewCounts = 1...1000
    static let graceSeconds = 0...604_800
    static let longestInterval = 1...31_622_400
    static let timingKinds = ["interval", "crontab", "clocked"]

    public init(
        store: ScheduleStore, integrations: IntegrationStore, dispatcher: TaskDispatcher, registry: PluginRegistry,
        wakeup: BeatWakeup, clock: any TimeSource
    ) {
        self.store = store
        self.integrations = integrations
        self.dispatcher = dispatcher
        self.registry = registry
        self.wakeup = wakeup
        self.clock = clock
    }

    /// Creates a schedule from its API body (see the README for the fields).
    public func create(_ body: JSONValue) async throws -> Schedule {
        var input = try InputObject(body)
        let now = clock.now()
        let name = input.string("name", required: true)
        var schedule = Schedule(
            id: Identifier.make(now: now), name: name ?? "", taskName: "", arguments: .object([:]), timing: .interval(seconds: 60),
            enabled: true, oneOff: false, startTime: nil, expires: nil, queue: IntegrationsService.defaultQueue,
            priority: IntegrationsService.defaultPriority, misfire: .runOnce,
            misfireGraceSeconds: Schedule.defaultMisfireGraceSeconds, overlap: .skip, integrationID: nil, anchor: now,
            nextRunAt: nil, lastRunAt: nil, lastTaskID: nil, totalRunCount: 0, createdAt: now, updatedAt: now)
        try await readTarget(&input, into: &schedule, creating: true)
        let timingGiven = Self.timingKinds.contains { input.has($0) }
        if let timing = readTiming(&input) {
            schedule.timing = timing
        } else if !timingGiven {
            input.addIssue("interval", "one of interval, crontab or clocked is required")
        }
        readOptions(&input, into: &schedule)
        try input.finish()
        schedule.anchor = schedule.startTime ?? now
        schedule.nextRunAt = schedule.firstFireTime(from: now)
        try await save(schedule)
        wakeup.notify()
        return schedule
    }

    /// Changes any writable field. The next fire time is recomputed when the timing, window or `enabled` changes.
    ///
    /// The body is read against the schedule as it is now, but saved against the row as it is when saved (locked):
    /// only the fields the body changed are carried over, and the next fire time is recomputed from that row. So an
    /// edit racing a fire keeps the fire's `next_run_at` unless it changes the timing itself.
    public func update(id: String, _ body: JSONValue) async throws -> Schedule {
        let before = try await get(id: id)
        var edited = before
        var input = try InputObject(body)
        if let name = input.string("name") { edited.name = name }
        try await readTarget(&input, into: &edited, creating: false)
        if let timing = readTiming(&input) { edited.timing = timing }
        readOptions(&input, into: &edited)
        try input.finish()
        let now = clock.now()
        let change = edited
        let saved: Schedule?
        do {
            saved = try await store.update(id: id) { current in Self.applying(change, readFrom: before, to: current, at: now) }
        } catch let error as StoreError where error.code == .conflict {
            throw ServiceError(.conflict, "a schedule named '\(edited.name)' already exists")
        }
        guard let saved else { throw ServiceError(.notFound, "no schedule with id \(id)") }
        wakeup.notify()
        return saved
    }

    /// `current` with the fields `edited` changed from `before` (what the edit was read against), and the next fire
    /// time recomputed if the timing, window or `enabled` changed from `current`.
    static func applying(_ edited: Schedule, readFrom before: Schedule, to current: Schedule, at now: Date) -> Schedule {
        var schedule = current
        func carry<Value: Equatable>(_ field: WritableKeyPath<Schedule, Value>) {
            if edited[keyPath: field] != before[keyPath: field] { schedule[keyPath: field] = edited[keyPath: field] }
        }
        carry(\.name)
        carry(\.taskName)
        carry(\.arguments)
        carry(\.integrationID)
        carry(\.timing)
        carry(\.enabled)
        carry(\.oneOff)
        carry(\.startTime)
        carry(\.expires)
        carry(\.queue)
        carry(\.priority)
        carry(\.misfire)
        carry(\.misfireGraceSeconds)
        carry(\.overlap)
        schedule.updatedAt = now
        if schedule.startTime != current.startTime { schedule.anchor = schedule.startTime ?? current.createdAt }
        let timingChanged =
            schedule.timing != current.timing || schedule.startTime != current.startTime || schedule.expires != current.expires
            || schedule.enabled != current.enabled
        if timingChanged || schedule.nextRunAt == nil {
            schedule.nextRunAt = schedule.firstFireTime(from: now)
        }
        return schedule
    }

    public func get(id: String) async throws -> Schedule {
        guard Identifier.isWellFormed(id), let schedule = try await store.find(id: id) else {
            throw ServiceError(.notFound, "no schedule with id \(id)")
        }
        return schedule
    }

    /// A schedule by id, or by name for the CLI.
    public func get(idOrName: String) async throws -> Schedule {
        if Identifier.isWellFormed(idOrName), let schedule = try await store.find(id: idOrName) { return schedule }
        guard let schedule = try await store.find(name: idOrName) else {
            throw ServiceError(.notFound, "no schedule with id or name '\(idOrName)'")
        }
        return schedule
    }

    public func list(enabled: Bool?, integrationID: String?, page: PageRequest) async throws -> Page<Schedule> {
        try await store.list(enabled: enabled, integrationID: integrationID, page: page)
    }

    public func delete(id: String) async throws {
        guard Identifier.isWellFormed(id), try await store.delete(id: id) else {
            throw ServiceError(.notFound, "no schedule with id \(id)")
        }
        wakeup.notify()
    }

    /// Fires the schedule once now, whatever its timing and `enabled`; returns the task.
    public func runNow(id: String) async throws -> TaskMessage {
        let schedule = try await get(id: id)
        let now = clock.now()
        let message = schedule.message(at: now)
        let staged = try await dispatcher.database.transaction { sql in
            let staged = try await dispatcher.stage(message, at: now, sql)
            try await store.recordManualRun(id: schedule.id, taskID: message.id, at: now, sql)
            return staged
        }
        // If the broker does not take it, the run waits in the outbox and the beat publishes it when the broker is back.
        await dispatcher.publishStaged(staged, at: clock.now())
        return message
    }

    /// The next `count` fire times of a stored schedule, from now.
    public func preview(_ schedule: Schedule, count: Int) -> [Date] {
        var times: [Date] = []
        var cursor = schedule.nextRunAt ?? schedule.firstFireTime(from: clock.now())
        while let time = cursor, times.count < count {
            times.append(time)
            if case .clocked = schedule.timing { break }
            cursor = schedule.nextFireTime(after: time)
        }
        return times
    }

    // MARK: Reading input

    /// `task` + `args`, or `integration` (which implies the fetch task with the integration's queue and priority).
    private func readTarget(_ input: inout InputObject, into schedule: inout Schedule, creating: Bool) async throws {
        if let integrationID = input.string("integration", length: 1...100) {
            if Identifier.isWellFormed(integrationID), let integration = try await integrations.find(id: integrationID) {
                schedule.integrationID = integration.id
                schedule.taskName = Self.fetchTask
                schedule.arguments = ["integration_id": .string(integration.id)]
                schedule.queue = integration.queue
                schedule.priority = integration.priority
            } else {
                input.addIssue("integration", "no integration with id \(integrationID)")
            }
            for conflicting in ["task", "args"] where input.raw(conflicting) != nil {
                input.addIssue(conflicting, "must be absent when integration is given")
            }
            return
        }
        if let task = input.string("task", required: creating, length: 1...200) {
            if registry.taskHandler(task) == nil {
                input.addIssue("task", "unknown task '\(task)'; known tasks: \(registry.taskNames.joined(separator: ", "))")
            }
            schedule.taskName = task
            schedule.integrationID = nil
        }
        if let arguments = input.raw("args"), arguments != .null {
            if arguments.objectValue == nil {
                input.addIssue("args", "must be an object, got \(arguments.typeName)")
            } else {
                schedule.arguments = arguments
            }
        }
    }

    /// Exactly one of `interval`, `crontab`, `clocked`; `nil` when none is given (or it is wrong, with issues added).
    private func readTiming(_ input: inout InputObject) -> ScheduleTiming? {
        let given = Self.timingKinds.filter { input.has($0) && input.raw($0) != .null }
        if given.count > 1 {
            input.addIssue(given[1], "give only one of interval, crontab or clocked (also got \(given[0]))")
            return nil
        }
        guard let kind = given.first, let value = input.object(kind) else { return nil }
        guard var timing = try? InputObject(value, path: kind) else { return nil }
        defer { input.add(timing.issues) }
        switch kind {
        case "interval":
            guard let every = timing.integer("every", required: true, range: Self.longestInterval) else {
                try? timing.finish()
                return nil
            }
            return (try? timing.finish()) == nil ? nil : .interval(seconds: every)
        case "crontab":
            let text = timing.string("expression", required: true, length: 1...200)
            let zoneName = timing.string("timezone", length: 1...100) ?? "UTC"
            var expression: CronExpression?
            if let text {
                do {
                    expression = try CronExpression(text)
                } catch {
                    timing.addIssue("expression", error.message)
                }
            }
            let zone = TimeZone(identifier: zoneName)
            if zone == nil {
                timing.addIssue("timezone", "unknown time zone '\(zoneName)'; use an IANA name such as Europe/London")
            }
            guard (try? timing.finish()) != nil, let expression, let zone else { return nil }
            return .crontab(expression, timeZone: zone)
        default:
            let at = Self.readDate(&timing, "at", required: true)
            guard (try? timing.finish()) != nil, let at else { return nil }
            return .clocked(at)
        }
    }

    private func readOptions(_ input: inout InputObject, into schedule: inout Schedule) {
        if let enabled = input.bool("enabled") { schedule.enabled = enabled }
        if let oneOff = input.bool("one_off") { schedule.oneOff = oneOff }
        if input.has("start_time") { schedule.startTime = Self.readDate(&input, "start_time") }
        if input.has("expires") { schedule.expires = Self.readDate(&input, "expires") }
        if let queue = input.string("queue", length: 1...64) {
            if let problem = IntegrationsService.problem(withQueueName: queue) {
                input.addIssue("queue", problem)
            } else {
                schedule.queue = queue
            }
        }
        if let priority = input.integer("priority", range: IntegrationsService.priorities) { schedule.priority = priority }
        if let misfire = Self.readChoice(&input, "misfire", as: MisfirePolicy.self) { schedule.misfire = misfire }
        if let grace = input.integer("misfire_grace_seconds", range: Self.graceSeconds) { schedule.misfireGraceSeconds = grace }
        if let overlap = Self.readChoice(&input, "overlap", as: OverlapPolicy.self) { schedule.overlap = overlap }
        for readOnly in ["last_run_at", "total_run_count", "next_run_at", "id", "created_at", "updated_at"] where input.has(readOnly) {
            _ = input.raw(readOnly)
            input.addIssue(readOnly, "is read-only")
        }
        if let start = schedule.startTime, let expires = schedule.expires, expires <= start {
            input.addIssue("expires", "must be after start_time")
        }
    }

    /// A member that must be one of an enumeration's raw values.
    static func readChoice<Choice: RawRepresentable & CaseIterable>(
        _ input: inout InputObject, _ key: String, as choice: Choice.Type
    ) -> Choice? where Choice.RawValue == String {
        guard let text = input.string(key, length: 1...40) else { return nil }
        guard let value = Choice(rawValue: text) else {
            input.addIssue(key, "must be one of \(Choice.allCases.map(\.rawValue).joined(separator: ", "))")
            return nil
        }
        return value
    }

    /// An ISO 8601 date-time member, with or without fractional seconds.
    static func readDate(_ input: inout InputObject, _ key: String, required: Bool = false) -> Date? {
        guard let text = input.string(key, required: required, length: 1...64) else { return nil }
        guard let date = Date(iso8601: text) else {
            input.addIssue(key, Date.iso8601Expectation)
            return nil
        }
        return date
    }

    private func save(_ schedule: Schedule) async throws {
        do {
            try await store.insert(schedule)
        } catch let error as StoreError where error.code == .conflict {
            throw ServiceError(.conflict, "a schedule named '\(schedule.name)' already exists")
        }
    }
}

extension Schedule {
    /// The task message one fire of this schedule publishes.
    func message(at now: Date) -> TaskMessage {
        TaskMessage(
            name: taskName, arguments: arguments, queue: queue, priority: priority, enqueuedAt: now,
            integrationID: integrationID, scheduleID: id)
    }
}
