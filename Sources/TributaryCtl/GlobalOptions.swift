/// `tributaryctl --aggregator URL status`: the options every subcommand shares may come before
/// the subcommand, as operators (and the README's table) write them. The argument parser reads
/// a subcommand's options only after its name, so they are moved there before parsing.
public enum GlobalOptions {
    /// Options shared by every subcommand that take a value.
    public static let withValue: Set<String> = ["--aggregator", "--token", "--token-file", "--ca-file"]
    /// Shared flags.
    public static let flags: Set<String> = ["--json"]

    /// `arguments` (without the program name) with the shared options found before the first
    /// subcommand moved after it; anything else is left as it is, for the parser to judge.
    public static func reorder(_ arguments: [String], subcommands: Set<String>) -> [String] {
        var moved: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if subcommands.contains(argument) {
                return [argument] + moved + Array(arguments[(index + 1)...])
            }
            let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
            if withValue.contains(name) {
                if argument.contains("=") {
                    moved.append(argument)
                    index += 1
                } else if index + 1 < arguments.count {
                    moved += [argument, arguments[index + 1]]
                    index += 2
                } else {
                    return arguments  // a missing value: the parser says so
                }
                continue
            }
            if flags.contains(argument) {
                moved.append(argument)
                index += 1
                continue
            }
            return arguments  // something else first (--help, a typo): left to the parser
        }
        return arguments
    }
}
