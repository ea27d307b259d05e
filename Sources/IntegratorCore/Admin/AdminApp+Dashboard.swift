// The dashboard: the beat (loudly when none leads), queues, workers, finished tasks per minute over the last hour,
// and the latest failures.
import Foundation
import Hummingbird

extension AdminApp {
    var queries: AdminQueries { AdminQueries(database: runtime.database) }

    func addDashboard(to router: Router<APIRequestContext>) {
        view("", on: router, refreshSeconds: 10) { _ in try await dashboard() }
    }

    func dashboard() async throws -> AdminPage {
        let now = runtime.clock.now()
        let beats = BeatStatusStore(database: runtime.database)
        async let beat = beats.current()
        async let silence = beats.silence(at: now)
        async let nextDue = queries.nextDue()
        async let queues = runtime.tasks.queues()
        async let byPriority = queries.queuedByPriority()
        async let workers = runtime.tasks.workers()
        async let perMinute = queries.finishedPerMinute(minutes: 60, now: now)
        async let failures = queries.runs(AdminRunFilter(states: [.failed, .dead]), before: nil, limit: 10)

        var sections: [AdminSection] = []
        if let silence = try await silence { sections.append(.warning("Beat missing: \(silence)")) }
        let leader = try await beat
        sections.append(.details([
            AdminDetail("State", .state(leader.map { $0.isLeading(at: now) } == true ? "leading" : "missing")),
            AdminDetail("Leader", AdminCell(leader?.holder ?? "none")),
            AdminDetail("Leading since", AdminCell(Self.time(leader?.ledSince))),
            AdminDetail("Last pass", AdminCell(leader.map { "\(Self.time($0.lastSeen)) (\(Self.age($0.lastSeen, now)) ago)" } ?? "never")),
            AdminDetail("Next due", AdminCell(Self.time(try await nextDue))),
        ], heading: "Beat"))

        let depth = try await byPriority
        sections.append(.table(AdminTable(
            columns: ["Queue", "Ready", "Queued by priority", "Delayed", "In flight", "Dead"],
            rows: try await queues.sorted { $0.queue < $1.queue }.map { stats in
                let priorities = (depth[stats.queue] ?? []).map { "p\($0.priority): \($0.count)" }.joined(separator: ", ")
                return AdminRow([
                    AdminCell(stats.queue, link: "tasks?queue=\(AdminFormValues.encode(stats.queue))"), AdminCell("\(stats.ready)"),
                    AdminCell(priorities.isEmpty ? "—" : priorities), AdminCell("\(stats.delayed)"), AdminCell("\(stats.inFlight)"),
                    AdminCell("\(stats.dead)", link: "tasks?queue=\(AdminFormValues.encode(stats.queue))&state=dead"),
                ])
            }, emptyText: "No queues yet."), heading: "Queues"))

        sections.append(.table(AdminTable(
            columns: ["Worker", "Host", "Queues", "Slots", "Busy", "Last heartbeat"],
            rows: try await workers.sorted { $0.id < $1.id }.map { worker in
                AdminRow([
                    AdminCell(worker.id), AdminCell(worker.host), AdminCell(worker.queues.joined(separator: ", ")),
                    AdminCell("\(worker.concurrency)"), AdminCell("\(worker.busy)"),
                    AdminCell("\(Self.age(worker.lastSeen, now)) ago"),
                ])
            }, emptyText: "No live workers: none has reported in the last 30 seconds."), heading: "Workers"))

        let minutes = try await perMinute
        let succeeded = minutes.reduce(0) { $0 + $1.succeeded }
        let failed = minutes.reduce(0) { $0 + $1.failed }
        sections.append(.trustedHTML(
            AdminChart.perMinute(minutes, now: now),
            heading: "Tasks per minute, last hour (\(succeeded) succeeded, \(failed) failed)"))

        let latest = try await failures.runs
        sections.append(.table(AdminTable(
            columns: ["Task", "State", "Queue", "Finished", "Error"],
            rows: latest.map { run in
                AdminRow([
                    AdminCell(run.name, link: "tasks/\(run.id)"), .state(run.state.rawValue), AdminCell(run.queue),
                    AdminCell(Self.time(run.finishedAt)), AdminCell(String((run.error ?? "").prefix(160))),
                ])
            }, emptyText: "No failures."), heading: "Latest failures"))
        return AdminPage(title: "Dashboard", sections: sections)
    }

    /// A time as the API writes it, or a dash.
    static func time(_ date: Date?) -> String { date?.apiString ?? "—" }

    static func age(_ date: Date, _ now: Date) -> String {
        let seconds = Int(max(0, now.timeIntervalSince(date)).rounded())
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7200 { return "\(seconds / 60) min" }
        return "\(seconds / 3600) h"
    }
}

/// The dashboard's bar chart, drawn on the server as SVG (no scripts, no assets from elsewhere).
enum AdminChart {
    static func perMinute(_ minutes: [MinuteCounts], now: Date) -> String {
        let width = 900.0, height = 220.0, left = 44.0, bottom = 24.0, top = 10.0
        let plotHeight = height - bottom - top
        let peak = max(4, minutes.map { $0.succeeded + $0.failed }.max() ?? 0)
        // Four gridline steps of a round size, so every label is a whole, round number.
        let scale = niceCeiling(Int((Double(peak) / 4).rounded(.up))) * 4
        let slot = (width - left - 6) / Double(max(1, minutes.count))
        var parts: [String] = [
            "<div class=\"chart\"><svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\" aria-label=\"Tasks finished per minute over the last hour\" xmlns=\"http://www.w3.org/2000/svg\">"
        ]
        for step in 0...4 {
            let value = scale * Double(step) / 4
            let y = top + plotHeight - plotHeight * Double(step) / 4
            parts.append("<line x1=\"\(left)\" y1=\"\(format(y))\" x2=\"\(width - 4)\" y2=\"\(format(y))\" stroke=\"#e3e6ec\"/>")
            parts.append("<text x=\"\(left - 6)\" y=\"\(format(y + 4))\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6475\">\(Int(value))</text>")
        }
        for (index, counts) in minutes.enumerated() {
            let x = left + Double(index) * slot + 1
            let barWidth = max(1, slot - 2)
            let okHeight = plotHeight * Double(counts.succeeded) / scale
            let badHeight = plotHeight * Double(counts.failed) / scale
            let base = top + plotHeight
            let title = "<title>\(minutes.count - index) min ago: \(counts.succeeded) succeeded, \(counts.failed) failed</title>"
            if counts.succeeded > 0 {
                parts.append("<rect x=\"\(format(x))\" y=\"\(format(base - okHeight))\" width=\"\(format(barWidth))\" height=\"\(format(okHeight))\" fill=\"#3a9d5d\">\(title)</rect>")
            }
            if counts.failed > 0 {
                parts.append("<rect x=\"\(format(x))\" y=\"\(format(base - okHeight - badHeight))\" width=\"\(format(barWidth))\" height=\"\(format(badHeight))\" fill=\"#c8372d\">\(title)</rect>")
            }
        }
        for minutesAgo in stride(from: 60, through: 0, by: -10) {
            let x = left + Double(minutes.count - minutesAgo) * slot
            let label = minutesAgo == 0 ? "now" : "-\(minutesAgo) min"
            let anchor = minutesAgo == 0 ? "end" : "middle"
            parts.append("<text x=\"\(format(x))\" y=\"\(format(height - 6))\" font-size=\"11\" text-anchor=\"\(anchor)\" fill=\"#5b6475\">\(label)</text>")
        }
        parts.append("<rect x=\"\(format(width - 230))\" y=\"2\" width=\"10\" height=\"10\" fill=\"#3a9d5d\"/><text x=\"\(format(width - 216))\" y=\"11\" font-size=\"11\" fill=\"#1d2330\">succeeded</text>")
        parts.append("<rect x=\"\(format(width - 140))\" y=\"2\" width=\"10\" height=\"10\" fill=\"#c8372d\"/><text x=\"\(format(width - 126))\" y=\"11\" font-size=\"11\" fill=\"#1d2330\">failed or dead</text>")
        parts.append("</svg></div>")
        return parts.joined()
    }

    /// The smallest of 1, 2, 5 × 10ⁿ at or above `value`, so the axis reads in round numbers.
    static func niceCeiling(_ value: Int) -> Double {
        var magnitude = 1.0
        while true {
            for factor in [1.0, 2.0, 5.0] where factor * magnitude >= Double(value) { return factor * magnitude }
            magnitude *= 10
        }
    }

    private static func format(_ value: Double) -> String { String(format: "%.1f", value) }
}
