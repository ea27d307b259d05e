// The plugins page: what each installed plugin contributes, and the schemas of its credentials types and providers.
import Foundation
import Hummingbird

extension AdminApp {
    func addPluginCatalog(to router: Router<APIRequestContext>) {
        view("plugins", on: router) { _ in
            AdminPage(title: "Plugins", sections: [
                .table(AdminTable(
                    columns: ["Plugin", "Summary", "Credentials types", "Providers", "Tasks", "Routes", "Services", "Admin pages"],
                    rows: runtime.registry.plugins.map { plugin in
                        AdminRow([
                            AdminCell(plugin.name, link: "plugins/\(plugin.id)"), AdminCell(plugin.summary),
                            AdminCell(plugin.credentialsTypes.map(\.id).joined(separator: ", ")),
                            AdminCell(plugin.providers.map(\.id).joined(separator: ", ")),
                            AdminCell(plugin.taskHandlers.map(\.name).joined(separator: ", ")),
                            AdminCell("\(plugin.routes.count)"), AdminCell(plugin.services.map(\.name).joined(separator: ", ")),
                            AdminCell("\(plugin.pages.count)"),
                        ])
                    }, emptyText: "No plugins are installed.")),
            ])
        }
        view("plugins/:id", on: router) { request in
            let id = try request.parameter("id")
            guard let plugin = runtime.registry.plugins.first(where: { $0.id == id }) else {
                throw ServiceError(.notFound, "no plugin '\(id)'")
            }
            var sections: [AdminSection] = [
                .details([
                    AdminDetail("Id", AdminCell(plugin.id)), AdminDetail("Summary", AdminCell(plugin.summary)),
                    AdminDetail("Tasks", AdminCell(plugin.taskHandlers.map(\.name).joined(separator: ", "))),
                    AdminDetail("Services", AdminCell(plugin.services.map { "\($0.name) (\($0.roles.map(\.rawValue).sorted().joined(separator: ", ")))" }
                        .joined(separator: "; "))),
                    AdminDetail("Change-event subscribers", AdminCell(plugin.eventSubscribers.map(\.name).joined(separator: ", "))),
                    AdminDetail("Own tables", AdminCell("\(plugin.migrations.count) migration\(plugin.migrations.count == 1 ? "" : "s")")),
                ]),
            ]
            if !plugin.routes.isEmpty {
                sections.append(.table(AdminTable(
                    columns: ["Method", "Path", "Role"],
                    rows: plugin.routes.map { route in
                        let role: String
                        if case .role(let needed) = route.access { role = needed.rawValue } else { role = "open" }
                        return AdminRow([AdminCell(route.method.rawValue), AdminCell(route.path), AdminCell(role)])
                    }), heading: "Routes"))
            }
            if !plugin.pages.isEmpty {
                sections.append(.table(AdminTable(
                    columns: ["Page", "Kind", "Role"],
                    rows: plugin.pages.map { page in
                        let isView: Bool
                        if case .view = page.kind { isView = true } else { isView = false }
                        let cell = isView && !page.path.contains("{") ? AdminCell(page.title ?? page.path, link: page.path) : AdminCell(page.path)
                        return AdminRow([cell, AdminCell(isView ? "page" : "action"), AdminCell(page.role.rawValue)])
                    }), heading: "Admin pages"))
            }
            for type in plugin.credentialsTypes {
                sections.append(.json(PluginCatalog.render(type), heading: "Credentials type \(type.name)"))
            }
            for provider in plugin.providers {
                sections.append(.json(PluginCatalog.render(provider), heading: "Provider \(provider.name)"))
            }
            return AdminPage(title: plugin.name, sections: sections)
        }
    }
}
