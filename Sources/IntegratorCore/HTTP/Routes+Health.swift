// Liveness and readiness, without authentication, for load balancers and orchestrators.
import Hummingbird

extension Routes {
    func addHealth(to router: Router<APIRequestContext>) {
        router.get("health") { _, _ in
            await healthResponse(checkMigrations: false)
        }
        router.get("ready") { _, _ in
            await healthResponse(checkMigrations: true)
        }
    }

    /// 200 `{"status":"healthy","database":"connected"}`, or 503 naming what is down.
    private func healthResponse(checkMigrations: Bool) async -> Response {
        guard await runtime.database.isReachable() else {
            return JSONValue.object(["status": "unhealthy", "database": "unreachable"]).response(status: .serviceUnavailable)
        }
        if checkMigrations {
            let applied = (try? await Migrator().appliedVersions(runtime.database)) ?? []
            let wanted = Migration.all.map(\.version)
            if !Set(wanted).isSubset(of: applied) {
                return JSONValue.object(["status": "unhealthy", "database": "connected", "migrations": "pending"])
                    .response(status: .serviceUnavailable)
            }
            return JSONValue.object(["status": "ready", "database": "connected", "migrations": "applied"]).response()
        }
        return JSONValue.object(["status": "healthy", "database": "connected"]).response()
    }
}
