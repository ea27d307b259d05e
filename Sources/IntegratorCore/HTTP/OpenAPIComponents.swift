// The schemas the engine's operations share, as the route handlers render them (Routes.swift, Routes+*.swift), and
// the request schemas built from the plugins' field declarations.

/// Named schemas of the document's `components`.
enum OpenAPIComponents {
    typealias S = OpenAPISchema

    /// Every engine schema, plus one per credentials type and provider of `registry`.
    static func schemas(_ registry: PluginRegistry) -> [String: JSONValue] {
        var schemas = engine
        for type in registry.credentialsTypes {
            schemas[publicFieldsName(type.id)] = type.publicFields.jsonSchema(title: "\(type.name): public fields")
            schemas[secretFieldsName(type.id)] = type.secretFields.jsonSchema(title: "\(type.name): secret fields")
        }
        for provider in registry.providers {
            schemas[configName(provider.id)] = provider.configFields.jsonSchema(title: "\(provider.name): config")
        }
        schemas["CredentialsTypeID"] = S.string(oneOf: registry.credentialsTypes.map(\.id))
        schemas["ProviderID"] = S.string(oneOf: registry.providers.map(\.id))
        schemas["CredentialsInput"] = credentialsInput(registry)
        schemas["IntegrationInput"] = integrationInput(registry)
        let taskName = S.string(oneOf: registry.taskNames, description: "A task of an installed plugin (GET /api/v1/plugins).")
        schemas["TaskInput"] = S.object(
            ["task": taskName, "args": S.any, "queue": queueName, "priority": S.integer(IntegrationsService.priorities)],
            required: ["task"], closed: true)
        schemas["ScheduleInput"] = scheduleInput(task: taskName)
        return schemas
    }

    static func publicFieldsName(_ typeID: String) -> String { "credentials.\(typeID).public" }
    static func secretFieldsName(_ typeID: String) -> String { "credentials.\(typeID).secret" }
    static func configName(_ providerID: String) -> String { "provider.\(providerID).config" }

    /// `POST /api/v1/credentials`: one shape per credentials type, told apart by `type`.
    static func credentialsInput(_ registry: PluginRegistry) -> JSONValue {
        let variants: [JSONValue] = registry.credentialsTypes.map { type in
            S.object(
                [
                    "name": S.string(minLength: 1, maxLength: 200), "type": ["const": .string(type.id)],
                    "public": S.ref(publicFieldsName(type.id)), "secret": S.ref(secretFieldsName(type.id)),
                ], required: Set(["name", "type"] + requiredParts(["public": type.publicFields, "secret": type.secretFields])),
                closed: true,
                description: type.name)
        }
        return [
            "oneOf": .array(variants), "description": "Credentials of one of the installed types (GET /api/v1/credential-types).",
        ]
    }

    /// The parts whose fields include one that is required and has no default.
    static func requiredParts(_ parts: [String: FieldSet]) -> [String] {
        parts.filter { $0.value.fields.contains { $0.isRequired && $0.defaultValue == nil } }.map(\.key)
    }

    /// `POST /api/v1/integrations`: one shape per provider, told apart by `provider`.
    static func integrationInput(_ registry: PluginRegistry) -> JSONValue {
        let variants: [JSONValue] = registry.providers.map { provider in
            S.object(
                [
                    "name": S.string(minLength: 1, maxLength: 200), "provider": ["const": .string(provider.id)],
                    "credentials": S.nullable(S.string(description: "Credentials id, of a type the provider allows.")),
                    "config": S.ref(configName(provider.id)), "active": S.boolean,
                    "queue": queueName, "priority": S.integer(IntegrationsService.priorities),
                    "max_attempts": S.nullable(S.integer(IntegrationsService.attempts)),
                ], required: Set(["name", "provider"] + requiredParts(["config": provider.configFields])), closed: true,
                description: provider.name)
        }
        return [
            "oneOf": .array(variants), "description": "An integration of one of the installed providers (GET /api/v1/providers).",
        ]
    }

    /// `POST /api/v1/schedules`: a name, a task or an integration, and exactly one timing.
    static func scheduleInput(task: JSONValue) -> JSONValue {
        let timings = ["interval", "crontab", "clocked"]
        let variants: [JSONValue] = timings.map { timing in
            var fields = scheduleFields(task: task)
            for other in timings where other != timing { fields[other] = nil }
            return S.object(fields, required: ["name", timing], closed: true, description: "Timed by `\(timing)`.")
        }
        return [
            "oneOf": .array(variants),
            "description": "`task` (with `args`) or `integration` says what runs; `interval`, `crontab` or `clocked` says when.",
        ]
    }

    static func scheduleFields(task: JSONValue) -> [String: JSONValue] {
        [
            "name": S.string(minLength: 1, maxLength: 200), "task": task, "args": S.anyObject,
            "integration": S.string(description: "Runs a fetch of this integration instead of `task`."),
            "interval": S.object(["every": S.integer(SchedulesService.longestInterval)], required: ["every"], closed: true),
            "crontab": S.object(
                [
                    "expression": S.string(minLength: 1, maxLength: 200, examples: ["*/5 * * * *"]),
                    "timezone": S.string(format: "time-zone", examples: ["UTC", "America/Sao_Paulo"]),
                ],
                required: ["expression"], closed: true),
            "clocked": S.object(["at": S.dateTime], required: ["at"], closed: true),
            "enabled": S.boolean, "one_off": S.boolean, "start_time": S.nullable(S.dateTime), "expires": S.nullable(S.dateTime),
            "queue": queueName, "priority": S.integer(IntegrationsService.priorities),
            "misfire": S.string(oneOf: MisfirePolicy.allCases.map(\.rawValue)),
            "misfire_grace_seconds": S.integer(SchedulesService.graceSeconds),
            "overlap": S.string(oneOf: OverlapPolicy.allCases.map(\.rawValue)),
        ]
    }

    static let queueName = S.string(minLength: 1, maxLength: 64, pattern: "^[A-Za-z0-9_.-]+$")

    static let engine: [String: JSONValue] = [
        "Error": S.record(
            [
                "error": S.record([
                    "code": S.string(description: "Stable and machine-readable, such as `validation_failed` or `not_found`."),
                    "message": S.string,
                    "details": S.array(S.record(["field": S.string, "message": S.string])),
                ])
            ], description: "Every error answer has this shape."),
        "Tokens": S.record([
            "access_token": S.string, "refresh_token": S.string, "token_type": S.string(oneOf: ["bearer"]), "expires_in": S.integer,
        ]),
        "Me": S.record(["name": S.string, "role": role, "id": S.string], optional: ["id"]),
        "Health": S.record(
            ["status": S.string(oneOf: ["healthy", "unhealthy"]), "database": S.string(oneOf: ["connected", "unreachable"])]),
        "Readiness": S.record(
            [
                "status": S.string(oneOf: ["ready", "unhealthy"]), "database": S.string(oneOf: ["connected", "unreachable"]),
                "migrations": S.string(oneOf: ["applied", "pending"]), "beat": S.string(oneOf: ["leading", "missing", "unknown"]),
                "warnings": S.array(S.string),
            ], optional: ["migrations", "beat", "warnings"]),
        "Credentials": S.record([
            "id": S.string, "name": S.string, "type": S.string, "public": S.anyObject,
            "secret": [
                "type": "object", "additionalProperties": S.string(oneOf: [Secret.mask]), "description": "Secret fields, masked.",
            ],
            "created_at": S.dateTime, "updated_at": S.dateTime,
        ]),
        "CredentialsPatch": S.object(
            ["name": S.string(minLength: 1, maxLength: 200), "type": S.string, "public": S.anyObject, "secret": S.anyObject],
            closed: true,
            description: "Fields to change; `public` and `secret` are merged into what is stored (null removes a field)."),
        "ConnectionTest": S.record(["ok": S.boolean, "message": S.string]),
        "Integration": S.record([
            "id": S.string, "name": S.string, "provider": S.string, "credentials": S.nullable(S.string), "config": S.anyObject,
            "active": S.boolean, "queue": S.string, "priority": S.integer, "max_attempts": S.nullable(S.integer),
            "created_at": S.dateTime, "updated_at": S.dateTime,
        ]),
        "CreatedIntegration": [
            "allOf": [
                S.ref("Integration"),
                S.object([
                    "suggested_schedule": S.record(
                        ["method": S.string, "path": S.string, "body": S.anyObject],
                        description: "The request that schedules the integration as its provider suggests.")
                ]),
            ]
        ],
        "IntegrationPatch": S.object(
            [
                "name": S.string(minLength: 1, maxLength: 200), "provider": S.string, "credentials": S.nullable(S.string),
                "config": S.anyObject, "active": S.boolean, "queue": queueName,
                "priority": S.integer(IntegrationsService.priorities),
                "max_attempts": S.nullable(S.integer(IntegrationsService.attempts)),
            ], closed: true, description: "Fields to change; `config` is merged into the stored config."),
        "User": S.record(["id": S.string, "username": S.string, "role": role, "created_at": S.dateTime, "updated_at": S.dateTime]),
        "UserInput": S.object(
            [
                "username": S.string(minLength: 1, maxLength: 64), "role": role,
                "password": S.string(minLength: 12, maxLength: 1000),
            ],
            required: ["username", "role", "password"], closed: true),
        "UserPatch": S.object(["role": role, "password": S.string(minLength: 12, maxLength: 1000)], closed: true),
        "TaskRun": S.record(
            [
                "id": S.string, "task": S.string, "args": S.any, "queue": S.string, "priority": S.integer, "state": taskState,
                "attempt": S.integer, "worker": S.nullable(S.string), "enqueued_at": S.nullable(S.dateTime),
                "started_at": S.nullable(S.dateTime), "finished_at": S.nullable(S.dateTime), "duration_ms": S.nullable(S.number),
                "error": S.nullable(S.string), "result": S.any, "integration": S.nullable(S.string),
                "schedule": S.nullable(S.string),
                "scheduled_for": S.nullable(S.dateTime),
                "attempts": S.array(
                    S.record([
                        "attempt": S.integer, "state": S.string, "worker": S.nullable(S.string), "deliveries": S.integer,
                        "started_at": S.nullable(S.dateTime), "finished_at": S.nullable(S.dateTime),
                        "duration_ms": S.nullable(S.number),
                        "error": S.nullable(S.string),
                    ])),
            ], optional: ["attempts"]),
        "Queue": S.record(["queue": S.string, "ready": S.integer, "in_flight": S.integer, "dead": S.integer, "delayed": S.integer]),
        "Worker": S.record([
            "id": S.string, "host": S.string, "queues": S.array(S.string), "concurrency": S.integer, "busy": S.integer,
            "busy_by_queue": ["type": "object", "additionalProperties": S.integer], "started_at": S.dateTime,
            "last_seen": S.dateTime,
        ]),
        "Record": S.record([
            "id": S.string, "integration": S.string, "stream": S.string, "external_id": S.string, "data": S.any,
            "content_hash": S.string,
            "first_seen_at": S.dateTime, "last_seen_at": S.dateTime, "updated_at": S.dateTime,
        ]),
        "Event": S.record([
            "id": S.string, "type": S.string, "integration": S.string, "stream": S.string, "record_id": S.string,
            "external_id": S.string,
            "data": S.any, "created_at": S.dateTime,
        ]),
        "FetchState": S.record([
            "integration": S.string,
            "streams": S.array(S.record(["stream": S.string, "cursor": S.any, "updated_at": S.dateTime])),
        ]),
        "Schedule": S.record(
            [
                "id": S.string, "name": S.string, "task": S.string, "args": S.any, "integration": S.nullable(S.string),
                "enabled": S.boolean, "one_off": S.boolean, "start_time": S.nullable(S.dateTime), "expires": S.nullable(S.dateTime),
                "queue": S.string, "priority": S.integer, "misfire": S.string(oneOf: MisfirePolicy.allCases.map(\.rawValue)),
                "misfire_grace_seconds": S.integer,
                "overlap": S.string(oneOf: OverlapPolicy.allCases.map(\.rawValue)),
                "next_run_at": S.nullable(S.dateTime), "last_run_at": S.nullable(S.dateTime), "total_run_count": S.integer,
                "created_at": S.dateTime, "updated_at": S.dateTime,
                "interval": S.record(["every": S.integer]),
                "crontab": S.record(["expression": S.string, "timezone": S.string]),
                "clocked": S.record(["at": S.dateTime]),
            ], optional: ["interval", "crontab", "clocked"]),
        "SchedulePatch": S.object(
            scheduleFields(task: S.string(minLength: 1, maxLength: 200)), closed: true,
            description: "Fields to change; giving one of `interval`, `crontab` or `clocked` replaces the timing."),
        "SchedulePreview": S.record(["timezone": S.string, "times": S.array(S.string)]),
        "TaskAccepted": S.record(["task_id": S.string]),
        "Plugin": S.record([
            "id": S.string, "name": S.string, "summary": S.string, "credential_types": S.array(S.ref("CredentialsType")),
            "providers": S.array(S.ref("Provider")), "tasks": S.array(S.string),
            "routes": S.array(S.record(["method": S.string, "path": S.string, "role": S.nullable(role)])),
            "services": S.array(S.record(["name": S.string, "processes": S.array(S.string)])),
            "event_subscribers": S.array(S.string), "migrations": S.integer,
        ]),
        "CredentialsType": S.record([
            "id": S.string, "name": S.string, "public_schema": S.anyObject, "secret_schema": S.anyObject,
            "connection_test": S.boolean,
        ]),
        "Provider": S.record(
            [
                "id": S.string, "name": S.string, "category": S.string, "allowed_credential_types": S.array(S.string),
                "config_schema": S.anyObject, "suggested_schedule": S.string,
            ], optional: ["suggested_schedule"]),
    ]

    static let role = S.string(oneOf: Role.allCases.map(\.rawValue))
    static let taskState = S.string(oneOf: TaskState.allCases.map(\.rawValue))
}
