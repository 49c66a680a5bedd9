/// One line a worker process writes on standard output: a verb, then `key=value` fields
/// (values never contain spaces). The coordinator reads these; anything else a worker
/// writes goes to standard error.
struct WorkerLine: CustomStringConvertible {
    var verb: String
    var fields: [(key: String, value: String)]

    init(_ verb: String, _ fields: [(String, Any)] = []) {
        self.verb = verb
        self.fields = fields.map { ($0.0, "\($0.1)") }
    }

    init?(parsing text: String) {
        let words = text.split(separator: " ")
        guard let first = words.first else { return nil }
        verb = String(first)
        fields = []
        for word in words.dropFirst() {
            guard let equals = word.firstIndex(of: "=") else { return nil }
            fields.append((String(word[..<equals]), String(word[word.index(after: equals)...])))
        }
    }

    var description: String {
        ([verb] + fields.map { "\($0.key)=\($0.value)" }).joined(separator: " ")
    }

    subscript(key: String) -> String? { fields.first { $0.key == key }?.value }
    func int(_ key: String) -> Int? { self[key].flatMap { Int($0) } }
    func double(_ key: String) -> Double? { self[key].flatMap { Double($0) } }
}
