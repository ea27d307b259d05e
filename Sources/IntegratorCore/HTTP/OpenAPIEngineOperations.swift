// The declarations of the engine's own routes (Routes+*.swift registers each with one of these).

extension APIOperation {
    private typealias S = OpenAPISchema

    private static func one(_ name: String) -> JSONValue { S.ref(name) }
    private static func page(_ name: String) -> JSONValue { S.page(of: S.ref(name)) }
    private static let idPath = APIParameter.path("id", "The resource's id.")

    // MARK: Health

    static let health = APIOperation(
        "Liveness: the database answers", tag: "health",
        responses: [.ok("Healthy.", one("Health")), APIResponse(503, "The database is unreachable.", schema: one("Health"))])
    static let ready = APIOperation(
        "Readiness: database reachable and migrations applied", tag: "health",
        description: "Stays 200 without a beat; `beat` and `warnings` say when none leads.",
        responses: [
            .ok("Ready.", one("Readiness")),
            APIResponse(503, "Database unreachable or migrations pending.", schema: one("Readiness")),
        ])

    static let metrics = APIOperation(
        "Prometheus metrics", tag: "health",
        description: """
            The text exposition format. Open when the API listens on a loopback address and INTEGRATOR_METRICS_TOKEN is not set; \
            otherwise it needs that token or INTEGRATOR_API_TOKEN as a bearer token.
            """,
        responses: [APIResponse(200, "The metrics.", schema: S.string, contentType: "text/plain")], errors: [401])

    // MARK: Auth

    static let login = APIOperation(
        "Log in with a username and password", tag: "auth",
        body: APIRequestBody(
            S.object(
                ["username": S.string(minLength: 1, maxLength: 64), "password": S.string(minLength: 1, maxLength: 1000)],
                required: ["username", "password"], closed: true)),
        responses: [.ok("An access token and a refresh token.", one("Tokens"))], errors: [401])
    static let refresh = APIOperation(
        "Trade a refresh token for new tokens", tag: "auth",
        body: APIRequestBody(
            S.object(["refresh_token": S.string(minLength: 1, maxLength: 4096)], required: ["refresh_token"], closed: true)),
        responses: [.ok("New tokens.", one("Tokens"))], errors: [401])
    static let me = APIOperation("Who the token belongs to", tag: "auth", responses: [.ok("The caller.", one("Me"))])

    // MARK: Plugins

    static let listPlugins = APIOperation(
        "Installed plugins and what each contributes", tag: "plugins", responses: [.ok("Every plugin.", S.items(one("Plugin")))])
    static let listCredentialTypes = APIOperation(
        "Credentials types, with their fields as JSON Schema", tag: "plugins",
        responses: [.ok("Every credentials type.", S.items(one("CredentialsType")))])
    static let getCredentialType = APIOperation(
        "One credentials type", tag: "plugins", parameters: [.path("id", "The type's id.", schema: one("CredentialsTypeID"))],
        responses: [.ok("The type.", one("CredentialsType"))])
    static let listProviders = APIOperation(
        "Providers, with their config as JSON Schema", tag: "plugins", responses: [.ok("Every provider.", S.items(one("Provider")))]
    )
    static let getProvider = APIOperation(
        "One provider", tag: "plugins", parameters: [.path("id", "The provider's id.", schema: one("ProviderID"))],
        responses: [.ok("The provider.", one("Provider"))])

    // MARK: Credentials

    static let listCredentials = APIOperation(
        "List credentials (secret fields masked)", tag: "credentials",
        parameters: [.query("type", "Only credentials of this type.")] + APIParameter.paging,
        responses: [.ok("A page of credentials.", page("Credentials"))])
    static let createCredentials = APIOperation(
        "Create credentials", tag: "credentials", description: "Secret fields are encrypted at rest and never shown again.",
        body: APIRequestBody(one("CredentialsInput")),
        responses: [.created("The credentials, secrets masked.", one("Credentials"))],
        errors: [409], links: [.id(under: "/api/v1/credentials")])
    static let getCredentials = APIOperation(
        "One credentials", tag: "credentials", responses: [.ok("The credentials.", one("Credentials"))])
    static let updateCredentials = APIOperation(
        "Change credentials", tag: "credentials", body: APIRequestBody(one("CredentialsPatch")),
        responses: [.ok("The credentials.", one("Credentials"))], errors: [409])
    static let deleteCredentials = APIOperation(
        "Delete credentials", tag: "credentials", responses: [.noContent("Deleted.")], errors: [409])
    static let testCredentials = APIOperation(
        "Test the connection with these credentials", tag: "credentials",
        responses: [.ok("Whether the connection works, and why not.", one("ConnectionTest"))], errors: [400, 502, 503])

    // MARK: Integrations

    static let listIntegrations = APIOperation(
        "List integrations", tag: "integrations",
        parameters: [
            .query("provider", "Only integrations of this provider."),
            .query("credentials", "Only integrations using these credentials."),
            .query("active", "Only active (true) or inactive (false) ones.", schema: S.boolean),
            .query("queue", "Only those on this queue."),
        ] + APIParameter.paging,
        responses: [.ok("A page of integrations.", page("Integration"))])
    static let createIntegration = APIOperation(
        "Create an integration", tag: "integrations", body: APIRequestBody(one("IntegrationInput")),
        responses: [.created("The integration, with its provider's suggested schedule if it has one.", one("CreatedIntegration"))],
        errors: [409], links: [.id(under: "/api/v1/integrations")])
    static let getIntegration = APIOperation(
        "One integration", tag: "integrations", responses: [.ok("The integration.", one("Integration"))])
    static let updateIntegration = APIOperation(
        "Change an integration", tag: "integrations", body: APIRequestBody(one("IntegrationPatch")),
        responses: [.ok("The integration.", one("Integration"))], errors: [409])
    static let deleteIntegration = APIOperation(
        "Delete an integration with its records and fetch state", tag: "integrations", responses: [.noContent("Deleted.")],
        errors: [409])

    // MARK: Records

    static let runIntegration = APIOperation(
        "Fetch now", tag: "records", description: "Enqueues one fetch of the integration.",
        responses: [.accepted("The enqueued task.", one("TaskRun"))], errors: [400, 409, 503], links: [.id(under: "/api/v1/tasks")])
    static let listRecords = APIOperation(
        "Records an integration fetched", tag: "records",
        parameters: [
            .query("stream", "Only this stream."),
            .query("updated_since", "Only records updated at or after this time.", schema: S.dateTime),
        ] + APIParameter.paging,
        responses: [.ok("A page of records.", page("Record"))])
    static let fetchState = APIOperation(
        "The fetch cursor of each stream", tag: "records", responses: [.ok("The cursors.", one("FetchState"))], errors: [400])
    static let resetFetchState = APIOperation(
        "Forget fetch cursors, so the next fetch starts over", tag: "records",
        parameters: [.query("stream", "Only this stream's cursor.")], responses: [.noContent("Reset.")])
    static let getRecord = APIOperation("One record", tag: "records", responses: [.ok("The record.", one("Record"))], errors: [400])
    static let listEvents = APIOperation(
        "Change events (records created or updated)", tag: "records",
        parameters: [
            .query("type", "Only events of this type, such as `demo.items.created`."),
            .query("integration", "Only this integration's events."),
            .query("since", "Only events at or after this time.", schema: S.dateTime),
        ] + APIParameter.paging,
        responses: [.ok("A page of events.", page("Event"))])

    // MARK: Users

    static let listUsers = APIOperation(
        "List users", tag: "users",
        parameters: [.query("role", "Only users with this role.", schema: OpenAPIComponents.role)] + APIParameter.paging,
        responses: [.ok("A page of users.", page("User"))])
    static let createUser = APIOperation(
        "Create a user", tag: "users", body: APIRequestBody(one("UserInput")), responses: [.created("The user.", one("User"))],
        errors: [409], links: [.id(under: "/api/v1/users")])
    static let getUser = APIOperation("One user", tag: "users", responses: [.ok("The user.", one("User"))])
    static let updateUser = APIOperation(
        "Change a user's role or password", tag: "users", body: APIRequestBody(one("UserPatch")),
        responses: [.ok("The user.", one("User"))], errors: [409])
    static let deleteUser = APIOperation("Delete a user", tag: "users", responses: [.noContent("Deleted.")], errors: [409])

    // MARK: Tasks

    static let listTasks = APIOperation(
        "Task runs, newest first", tag: "tasks",
        parameters: [
            .query("task", "Only runs of this task."), .query("queue", "Only runs on this queue."),
            .query("integration", "Only runs of this integration."), .query("schedule", "Only runs this schedule fired."),
            .query("state", "Only runs in this state.", schema: OpenAPIComponents.taskState),
            .query("since", "Only runs enqueued at or after this time.", schema: S.dateTime),
            .query("until", "Only runs enqueued before this time.", schema: S.dateTime),
        ] + APIParameter.paging,
        responses: [.ok("A page of runs.", page("TaskRun"))])
    static let enqueueTask = APIOperation(
        "Enqueue a task", tag: "tasks", body: APIRequestBody(one("TaskInput")),
        responses: [.accepted("The run, queued.", one("TaskRun"))], errors: [503], links: [.id(under: "/api/v1/tasks")])
    static let getTask = APIOperation("One run with its attempts", tag: "tasks", responses: [.ok("The run.", one("TaskRun"))])
    static let retryTask = APIOperation(
        "Run a failed or dead task again", tag: "tasks", responses: [.accepted("The run, queued again.", one("TaskRun"))],
        errors: [409, 503], links: [.id(under: "/api/v1/tasks")])
    static let revokeTask = APIOperation(
        "Revoke a task that has not started", tag: "tasks", responses: [.noContent("Revoked.")], errors: [409, 503])
    static let listQueues = APIOperation(
        "Queue depths", tag: "tasks", responses: [.ok("Every queue.", S.items(one("Queue")))], errors: [503])
    static let listWorkers = APIOperation(
        "Live workers", tag: "tasks", responses: [.ok("Every live worker.", S.items(one("Worker")))])

    // MARK: Schedules

    static let listSchedules = APIOperation(
        "List schedules", tag: "schedules",
        parameters: [
            .query("enabled", "Only enabled (true) or disabled (false) ones.", schema: S.boolean),
            .query("integration", "Only this integration's schedules."),
        ] + APIParameter.paging,
        responses: [.ok("A page of schedules.", page("Schedule"))])
    static let createSchedule = APIOperation(
        "Create a schedule", tag: "schedules", body: APIRequestBody(one("ScheduleInput")),
        responses: [.created("The schedule.", one("Schedule"))], errors: [409], links: [.id(under: "/api/v1/schedules")])
    static let getSchedule = APIOperation("One schedule", tag: "schedules", responses: [.ok("The schedule.", one("Schedule"))])
    static let updateSchedule = APIOperation(
        "Change a schedule", tag: "schedules", body: APIRequestBody(one("SchedulePatch")),
        responses: [.ok("The schedule.", one("Schedule"))], errors: [409])
    static let deleteSchedule = APIOperation("Delete a schedule", tag: "schedules", responses: [.noContent("Deleted.")])
    static let runSchedule = APIOperation(
        "Fire a schedule now", tag: "schedules", responses: [.accepted("The enqueued task.", one("TaskAccepted"))],
        errors: [409, 503], links: [APILink("/api/v1/tasks/{id}", parameter: "id", from: "/task_id")])
    static let previewSchedule = APIOperation(
        "The schedule's next fire times", tag: "schedules",
        parameters: [.query("count", "How many times.", schema: S.integer(SchedulesService.previewCounts))],
        responses: [.ok("The times, in the schedule's zone.", one("SchedulePreview"))])
}
