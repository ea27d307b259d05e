// The normalized shapes of Sympla records: what is stored, diffed and published. Documented in Plugins.md.
import IntegratorCore

/// Maps Sympla's raw objects to stable, documented shapes. Fields Sympla omits (it leaves out nulls) are left out.
enum SymplaRecord {
    static func normalize(_ raw: JSONValue, stream: SymplaStream) -> JSONValue {
        switch stream {
        case .events: event(raw)
        case .orders: order(raw)
        case .participants: participant(raw)
        }
    }

    /// `{id, reference_id, name, detail, start_date, end_date, url, image, published, cancelled, private, address,
    /// host, categories}`.
    static func event(_ raw: JSONValue) -> JSONValue {
        var shape = copy(raw, ["id", "reference_id", "name", "detail", "start_date", "end_date", "url", "image", "address", "host"])
        shape["published"] = flag(raw["published"])
        shape["cancelled"] = flag(raw["cancelled"])
        shape["private"] = flag(raw["private_event"])
        let categories = [raw["category_prim"]?["name"], raw["category_sec"]?["name"]].compactMap { $0?.stringValue }
        if !categories.isEmpty { shape["categories"] = .array(categories.map(JSONValue.string)) }
        return .object(shape)
    }

    /// `{id, event_id, status, order_date, updated_date, approved_date, transaction_type, discount_code, total,
    /// net_value, buyer: {first_name, last_name, email}, utm}`.
    static func order(_ raw: JSONValue) -> JSONValue {
        var shape = copy(
            raw, ["id", "event_id", "order_date", "updated_date", "approved_date", "transaction_type", "discount_code", "utm"])
        shape["status"] = raw["order_status"]
        shape["total"] = raw["order_total_sale_price"]
        shape["net_value"] = raw["order_total_net_value"]
        let buyer = renamed(raw, ["buyer_first_name": "first_name", "buyer_last_name": "last_name", "buyer_email": "email"])
        if !buyer.isEmpty { shape["buyer"] = .object(buyer) }
        return .object(shape)
    }

    /// `{id, event_id, order_id, order_status, order_date, first_name, last_name, email,
    /// ticket: {number, qr_code, name, sale_price}, checked_in, checked_in_at, custom_form}`.
    static func participant(_ raw: JSONValue) -> JSONValue {
        var shape = copy(
            raw, ["id", "event_id", "order_id", "order_status", "order_date", "first_name", "last_name", "email", "custom_form"])
        let ticket = renamed(
            raw,
            ["ticket_number": "number", "ticket_num_qr_code": "qr_code", "ticket_name": "name", "ticket_sale_price": "sale_price"])
        if !ticket.isEmpty { shape["ticket"] = .object(ticket) }
        // `checkin` is an object, or a list of them for events with several check-in points.
        let checkins = raw["checkin"].map { $0.arrayValue ?? [$0] } ?? []
        let done = checkins.filter { flag($0["check_in"]) == .bool(true) }
        shape["checked_in"] = .bool(!done.isEmpty)
        if let at = done.compactMap({ $0["check_in_date"]?.stringValue }).min() { shape["checked_in_at"] = .string(at) }
        return .object(shape)
    }

    private static func copy(_ raw: JSONValue, _ keys: [String]) -> [String: JSONValue] {
        var shape: [String: JSONValue] = [:]
        for key in keys { if let value = raw[key], !value.isNull { shape[key] = value } }
        return shape
    }

    private static func renamed(_ raw: JSONValue, _ names: [String: String]) -> [String: JSONValue] {
        var shape: [String: JSONValue] = [:]
        for (from, to) in names { if let value = raw[from], !value.isNull { shape[to] = value } }
        return shape
    }

    /// Sympla writes flags as 0/1 or as booleans.
    private static func flag(_ value: JSONValue?) -> JSONValue? {
        switch value {
        case .bool(let flag): .bool(flag)
        case .number(let number): .bool(number != 0)
        case .string(let text): .bool(text == "1" || text.lowercased() == "true")
        default: nil
        }
    }
}
