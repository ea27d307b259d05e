// /api/v1/schedules: operators schedule work, everyone reads.
import Foundation
import Hummingbird

extension Routes {
    func addSchedules(to group: DocumentedRoutes) {
        group.get(access: .role(.viewer), .listSchedules) { request, context in
            let page = try await runtime.schedules.list(
                enabled: try queryBool(request, "enabled"), integrationID: query(request, "integration"),
                page: try pageRequest(request))
            return list(page, render: Self.render)
        }
        group.post(access: .role(.operator), .createSchedule) { request, context in
            let schedule = try await runtime.schedules.create(try await readJSON(request))
            context.logger.info("schedule created", metadata: ["schedule.id": "\(schedule.id)"])
            return Self.render(schedule).response(status: .created)
        }
        group.get(":id", access: .role(.viewer), .getSchedule) { _, context in
            return Self.render(try await runtime.schedules.get(id: try context.parameters.require("id"))).response()
        }
        group.patch(":id", access: .role(.operator), .updateSchedule) { request, context in
            let schedule = try await runtime.schedules.update(id: try context.parameters.require("id"), try await readJSON(request))
            return Self.render(schedule).response()
        }
        group.delete(":id", access: .role(.operator), .deleteSchedule) { _, context in
            try await runtime.schedules.delete(id: try context.parameters.require("id"))
            return Response(status: .noContent)
        }
        group.post(":id/run", access: .role(.operator), .runSchedule) { _, context in
            let message = try await runtime.schedules.runNow(id: try context.parameters.require("id"))
            return JSONValue.object(["task_id": .string(message.id)]).response(status: .accepted)
        }
        group.get(":id/preview", access: .role(.viewer), .previewSchedule) { request, context in
            var count = 10
            if let text = query(request, "count") {
                guard let value = Int(text), SchedulesService.previewCounts.contains(value) else {
                    throw APIError.validation(ValidationFailure([
                        .init(field: "count", message: "must be an integer from 1 to \(SchedulesService.previewCounts.upperBound)")
                    ]))
                }
                count = value
            }
            let schedule = try await runtime.schedules.get(id: try context.parameters.require("id"))
            let times = runtime.schedules.preview(schedule, count: count)
            let zone = schedule.timing.displayZone
            return JSONValue.object([
                "timezone": .string(zone.identifier),
                "times": .array(times.map { .string($0.iso8601(in: zone)) }),
            ]).response()
        }
    }

    static func render(_ schedule: Schedule) -> JSONValue {
        func date(_ value: Date?) -> JSONValue { value.map { .string($0.apiString) } ?? .null }
        var object: [String: JSONValue] = [
            "id": .string(schedule.id),
            "name": .string(schedule.name),
            "task": .string(schedule.taskName),
            "args": schedule.arguments,
            "integration": schedule.integrationID.map(JSONValue.string) ?? .null,
            "enabled": .bool(schedule.enabled),
            "one_off": .bool(schedule.oneOff),
            "start_time": date(schedule.startTime),
            "expires": date(schedule.expires),
            "queue": .string(schedule.queue),
            "priority": .number(Double(schedule.priority)),
            "misfire": .string(schedule.misfire.rawValue),
            "misfire_grace_seconds": .number(Double(schedule.misfireGraceSeconds)),
            "overlap": .string(schedule.overlap.rawValue),
            "next_run_at": date(schedule.nextRunAt),
            "last_run_at": date(schedule.lastRunAt),
            "total_run_count": .number(Double(schedule.totalRunCount)),
            "created_at": date(schedule.createdAt),
            "updated_at": date(schedule.updatedAt),
        ]
        switch schedule.timing {
        case .interval(let seconds):
            object["interval"] = ["every": .number(Double(seconds))]
        case .crontab(let expression, let zone):
            object["crontab"] = ["expression": .string(expression.description), "timezone": .string(zone.identifier)]
        case .clocked(let at):
            object["clocked"] = ["at": .string(at.apiString)]
        }
        return .object(object)
    }
}

extension ScheduleTiming {
    /// The zone fire times are shown in: the crontab's, else UTC.
    public var displayZone: TimeZone {
        if case .crontab(_, let zone) = self { return zone }
        return TimeZone(identifier: "UTC")!
    }
}

extension Date {
    /// ISO 8601 with the UTC offset `zone` has at this instant, such as `2026-03-08T03:00:00-04:00`
    /// (`+00:00` for UTC, so every line reads the same way).
    public func iso8601(in zone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: self)
        let offset = zone.secondsFromGMT(for: self)
        let sign = offset < 0 ? "-" : "+"
        let minutes = abs(offset) / 60
        func two(_ value: Int?) -> String { String(format: "%02d", value ?? 0) }
        return "\(String(format: "%04d", parts.year ?? 0))-\(two(parts.month))-\(two(parts.day))T\(two(parts.hour)):\(two(parts.minute)):\(two(parts.second))\(sign)\(two(minutes / 60)):\(two(minutes % 60))"
    }
}
