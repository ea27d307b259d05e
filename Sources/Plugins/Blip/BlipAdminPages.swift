// The BLiP plugin's pages in the admin web UI: the notifications it sends, filtered by status and phone, and one
// notification's detail.
import Foundation
import IntegratorCore

enum BlipAdminPages {
    static let all: [PluginPage] = [
        .view("notifications", title: "Notifications") { request, environment in
            let page = try await BlipService(environment: environment).notifications(
                status: request.query["status"], phone: request.query["phone"], page: request.page)
            return AdminPage(title: "BLiP notifications", sections: [
                .table(AdminTable(
                    columns: ["Notification", "Phone", "Template", "Status", "Attempts", "Last error", "Created"],
                    rows: page.items.map { item in
                        let id = item["id"]?.stringValue ?? ""
                        return AdminRow([
                            AdminCell(id, link: "notifications/\(id)"), AdminCell(item["phone"]?.stringValue ?? ""),
                            AdminCell(item["template"]?.stringValue ?? ""), .state(item["status"]?.stringValue ?? ""),
                            AdminCell("\(item["attempts"]?.intValue ?? 0)"), AdminCell(item["last_error"]?.stringValue ?? ""),
                            AdminCell(item["created_at"]?.stringValue ?? ""),
                        ])
                    },
                    emptyText: "No notifications.",
                    filters: [
                        AdminField("status", label: "Status", kind: .select, value: request.query["status"] ?? "",
                                   options: [("", "any")] + BlipStatus.allCases.map { ($0.rawValue, $0.rawValue) }),
                        AdminField("phone", label: "Phone", value: request.query["phone"] ?? "", placeholder: "+55 11 91234-5678"),
                    ],
                    nextCursor: page.nextCursor)),
            ])
        },
        .view("notifications/{id}") { request, environment in
            let item = try await BlipService(environment: environment).notification(try request.parameter("id"))
            return AdminPage(title: "BLiP notification", sections: [
                .details([
                    AdminDetail("Status", .state(item["status"]?.stringValue ?? "")),
                    AdminDetail("Phone", AdminCell(item["phone"]?.stringValue ?? "")),
                    AdminDetail("Template", AdminCell(item["template"]?.stringValue ?? "")),
                    AdminDetail("Attempts", AdminCell("\(item["attempts"]?.intValue ?? 0)")),
                    AdminDetail("Last error", AdminCell(item["last_error"]?.stringValue ?? "—")),
                ]),
                .json(item, heading: "Notification"),
            ])
        },
    ]
}
