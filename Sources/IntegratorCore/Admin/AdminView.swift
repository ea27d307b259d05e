// What an admin page is made of: sections of tables, details, forms and buttons. The engine's pages and the plugins'
// pages are built from these, and the admin renders them in one layout, escaping every text.

/// One page of the admin web UI.
public struct AdminPage: Sendable {
    public var title: String
    public var sections: [AdminSection]

    public init(title: String, sections: [AdminSection]) {
        self.title = title
        self.sections = sections
    }
}

/// A block of a page, under an optional heading.
public struct AdminSection: Sendable {
    enum Content: Sendable {
        case table(AdminTable)
        case details([AdminDetail])
        case text(String)
        case code(String)
        case form(AdminForm)
        case buttons([AdminButton])
        case links([AdminLink])
        case warning(String)
        /// Markup the engine built itself with every value escaped (the dashboard's chart).
        case trustedHTML(String)
    }

    var heading: String?
    var content: Content

    public static func table(_ table: AdminTable, heading: String? = nil) -> AdminSection {
        AdminSection(heading: heading, content: .table(table))
    }

    /// Label and value pairs.
    public static func details(_ details: [AdminDetail], heading: String? = nil) -> AdminSection {
        AdminSection(heading: heading, content: .details(details))
    }

    /// A paragraph.
    public static func text(_ text: String, heading: String? = nil) -> AdminSection {
        AdminSection(heading: heading, content: .text(text))
    }

    /// A JSON value, pretty-printed.
    public static func json(_ value: JSONValue, heading: String? = nil) -> AdminSection {
        AdminSection(heading: heading, content: .code(value.prettyText))
    }

    public static func form(_ form: AdminForm, heading: String? = nil) -> AdminSection {
        AdminSection(heading: heading, content: .form(form))
    }

    /// Buttons that post to actions; those the viewer's role may not use are left out.
    public static func buttons(_ buttons: [AdminButton], heading: String? = nil) -> AdminSection {
        AdminSection(heading: heading, content: .buttons(buttons))
    }

    /// Links styled as buttons (to a form, a filtered list); those the viewer's role may not use are left out.
    public static func links(_ links: [AdminLink]) -> AdminSection {
        AdminSection(heading: nil, content: .links(links))
    }

    /// A loud notice at the top of its place on the page.
    public static func warning(_ text: String) -> AdminSection {
        AdminSection(heading: nil, content: .warning(text))
    }

    static func trustedHTML(_ html: String, heading: String? = nil) -> AdminSection {
        AdminSection(heading: heading, content: .trustedHTML(html))
    }
}

/// One label and its value.
public struct AdminDetail: Sendable {
    public var label: String
    public var value: AdminCell

    public init(_ label: String, _ value: AdminCell) {
        self.label = label
        self.value = value
    }
}

/// A table cell: text, optionally a link, optionally shown as a state badge.
public struct AdminCell: Sendable, ExpressibleByStringLiteral {
    public var text: String
    /// A path under `/admin` (`webhooks/events/1`) or an absolute one (`/admin/tasks/1`).
    public var link: String?
    /// Shown as a badge coloured by its text (`succeeded`, `failed`, `dead`, …).
    public var isState: Bool

    public init(_ text: String, link: String? = nil, isState: Bool = false) {
        self.text = text
        self.link = link
        self.isState = isState
    }

    public init(stringLiteral value: String) { self.init(value) }

    /// A state badge (`succeeded`, `failed`, `pending`, …).
    public static func state(_ text: String) -> AdminCell { AdminCell(text, isState: true) }
}

/// A table of rows, with optional filters above it, per-row buttons, a selection with bulk buttons, and a link to the
/// next page.
public struct AdminTable: Sendable {
    public var columns: [String]
    public var rows: [AdminRow]
    /// Shown instead of the table when it has no rows.
    public var emptyText: String
    /// Filters above the table: a `GET` form to the same page.
    public var filters: [AdminField]
    /// The cursor of the next page; the admin links to the same page and query with `cursor` set to it.
    public var nextCursor: String?
    /// When set, every row with a ``AdminRow/selectionValue`` gets a checkbox, and these buttons post the checked ones.
    public var selection: AdminSelection?

    public init(
        columns: [String], rows: [AdminRow], emptyText: String = "Nothing here yet.", filters: [AdminField] = [],
        nextCursor: String? = nil, selection: AdminSelection? = nil
    ) {
        self.columns = columns
        self.rows = rows
        self.emptyText = emptyText
        self.filters = filters
        self.nextCursor = nextCursor
        self.selection = selection
    }
}

/// One row of a table.
public struct AdminRow: Sendable {
    public var cells: [AdminCell]
    public var buttons: [AdminButton]
    /// What the row's checkbox posts when the table has a selection.
    public var selectionValue: String?

    public init(_ cells: [AdminCell], buttons: [AdminButton] = [], selectionValue: String? = nil) {
        self.cells = cells
        self.buttons = buttons
        self.selectionValue = selectionValue
    }
}

/// Checkboxes on a table's rows and the buttons that post the checked values as `field`.
public struct AdminSelection: Sendable {
    public var field: String
    public var buttons: [AdminButton]

    public init(field: String = "id", buttons: [AdminButton]) {
        self.field = field
        self.buttons = buttons
    }
}

/// A link shown as a button, such as "New credentials".
public struct AdminLink: Sendable {
    public var label: String
    /// A path under `/admin` or an absolute one.
    public var link: String
    /// The least role that sees the link (write pages are for operators and admins).
    public var role: Role

    public init(_ label: String, link: String, role: Role = .viewer) {
        self.label = label
        self.link = link
        self.role = role
    }
}

/// A button posting to an action (with the session's CSRF token and its own hidden fields).
public struct AdminButton: Sendable {
    public var label: String
    /// A path under `/admin` (`webhooks/dead-letters/redrive`) or an absolute one.
    public var action: String
    public var fields: [String: String]
    /// The least role that sees the button; the action checks the role again.
    public var role: Role
    /// Asked in the browser before posting (with JavaScript on).
    public var confirm: String?
    public var isDangerous: Bool

    public init(
        _ label: String, action: String, fields: [String: String] = [:], role: Role = .operator, confirm: String? = nil,
        isDangerous: Bool = false
    ) {
        self.label = label
        self.action = action
        self.fields = fields
        self.role = role
        self.confirm = confirm
        self.isDangerous = isDangerous
    }
}

/// An HTML form posted to an action.
public struct AdminForm: Sendable {
    public var action: String
    public var fields: [AdminField]
    public var submitLabel: String
    /// The least role that sees the form; viewers see its values read-only instead.
    public var role: Role
    /// Problems not tied to one field, shown above the form.
    public var errors: [String]
    /// Set for forms that only read (filters): sent with `GET`, without a CSRF token.
    public var isQuery: Bool
    /// The form element's id, for the admin's own scripts.
    public var elementID: String?

    public init(
        action: String, fields: [AdminField], submitLabel: String = "Save", role: Role = .operator, errors: [String] = [],
        isQuery: Bool = false, elementID: String? = nil
    ) {
        self.elementID = elementID
        self.action = action
        self.fields = fields
        self.submitLabel = submitLabel
        self.role = role
        self.errors = errors
        self.isQuery = isQuery
    }
}

/// One input of a form.
public struct AdminField: Sendable {
    public enum Kind: Sendable, Equatable {
        case text
        /// Never filled in from stored values: secrets are write-only.
        case password
        case number
        case checkbox
        case select
        /// Checkboxes for a set of values; the form posts the field once per checked value.
        case multiSelect
        case textarea
        case hidden
        case dateTime
    }

    public var name: String
    public var label: String
    public var kind: Kind
    public var value: String
    /// The checked values of a multi-select (and `["true"]` for a checked checkbox).
    public var selected: Set<String>
    /// Value and label of each choice of a select or multi-select.
    public var options: [(value: String, label: String)]
    public var help: String?
    public var example: String?
    public var placeholder: String?
    public var isRequired: Bool
    public var error: String?
    /// The element's id, for labels and the admin's own scripts; defaults to one made from the name.
    public var elementID: String?

    public init(
        _ name: String, label: String, kind: Kind = .text, value: String = "", selected: Set<String> = [],
        options: [(value: String, label: String)] = [], help: String? = nil, example: String? = nil,
        placeholder: String? = nil, isRequired: Bool = false, error: String? = nil, elementID: String? = nil
    ) {
        self.name = name
        self.label = label
        self.kind = kind
        self.value = value
        self.selected = selected
        self.options = options
        self.help = help
        self.example = example
        self.placeholder = placeholder
        self.isRequired = isRequired
        self.error = error
        self.elementID = elementID
    }
}

/// Where an action sends the browser next.
public enum AdminActionResult: Sendable {
    /// A `303 See Other` to a path under `/admin` (or an absolute one), with a notice shown on arrival.
    case redirect(String, notice: String? = nil)
    /// A page shown in place, such as a form again with its problems marked (status 422).
    case page(AdminPage)
}
