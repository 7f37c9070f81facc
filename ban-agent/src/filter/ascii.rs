//! `\d`, `\s` and `\w` of our filters' regexes as ASCII classes: log fields (times, ports,
//! status codes, addresses) are written in ASCII, and the Unicode classes the regex crate
//! takes by default make automata several times larger, which the backtracking engine
//! that takes captures pays for on every failure line. A filter that wants Unicode
//! writes it (`\p{Nd}`, `\p{White_Space}`, `\p{Alphabetic}`); `.` and negated classes
//! such as `[^ "]` stay Unicode, as a `str` regex needs.
//!
//! The rewrite goes through regex-syntax's syntax tree and printer, so escapes, classes and
//! groups are read as the regex crate reads them: `\d` becomes `[[:digit:]]`, `\D`
//! `[[:^digit:]]`, and inside a class `[\d.]` becomes `[[:digit:].]`.

use regex_syntax::ast::{
    self, Ast, ClassAscii, ClassAsciiKind, ClassBracketed, ClassPerl, ClassPerlKind, ClassSet,
    ClassSetItem,
};

/// `regex` with its Perl classes as ASCII ones; unchanged when it does not parse (compiling
/// it then says why, on the text as written).
pub fn perl_classes(regex: &str) -> String {
    let Ok(mut tree) = ast::parse::Parser::new().parse(regex) else {
        return regex.to_owned();
    };
    rewrite(&mut tree);
    let mut out = String::with_capacity(regex.len() + 16);
    match ast::print::Printer::new().print(&tree, &mut out) {
        Ok(()) => out,
        Err(_) => regex.to_owned(),
    }
}

fn as_ascii(class: &ClassPerl) -> ClassAscii {
    ClassAscii {
        span: class.span,
        kind: match class.kind {
            ClassPerlKind::Digit => ClassAsciiKind::Digit,
            ClassPerlKind::Space => ClassAsciiKind::Space,
            ClassPerlKind::Word => ClassAsciiKind::Word,
        },
        negated: class.negated,
    }
}

fn rewrite(tree: &mut Ast) {
    match tree {
        Ast::ClassPerl(class) => {
            let ascii = as_ascii(class);
            *tree = Ast::class_bracketed(ClassBracketed {
                span: ascii.span,
                negated: false,
                kind: ClassSet::Item(ClassSetItem::Ascii(ascii)),
            });
        }
        Ast::ClassBracketed(class) => rewrite_set(&mut class.kind),
        Ast::Repetition(repetition) => rewrite(&mut repetition.ast),
        Ast::Group(group) => rewrite(&mut group.ast),
        Ast::Alternation(alternation) => alternation.asts.iter_mut().for_each(rewrite),
        Ast::Concat(concat) => concat.asts.iter_mut().for_each(rewrite),
        Ast::Empty(_)
        | Ast::Flags(_)
        | Ast::Literal(_)
        | Ast::Dot(_)
        | Ast::Assertion(_)
        | Ast::ClassUnicode(_) => {}
    }
}

fn rewrite_set(set: &mut ClassSet) {
    match set {
        ClassSet::Item(item) => rewrite_item(item),
        ClassSet::BinaryOp(op) => {
            rewrite_set(&mut op.lhs);
            rewrite_set(&mut op.rhs);
        }
    }
}

fn rewrite_item(item: &mut ClassSetItem) {
    match item {
        ClassSetItem::Perl(class) => *item = ClassSetItem::Ascii(as_ascii(class)),
        ClassSetItem::Bracketed(class) => rewrite_set(&mut class.kind),
        ClassSetItem::Union(union) => union.items.iter_mut().for_each(rewrite_item),
        ClassSetItem::Empty(_)
        | ClassSetItem::Literal(_)
        | ClassSetItem::Range(_)
        | ClassSetItem::Ascii(_)
        | ClassSetItem::Unicode(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_become_ascii_in_and_out_of_brackets() {
        for (written, rewritten) in [
            (
                r"^\d+ \D\s\S\w\W$",
                r"^[[:digit:]]+ [[:^digit:]][[:space:]][[:^space:]][[:word:]][[:^word:]]$",
            ),
            (r"[\d.]+ [^\s\x22]*", r"[[:digit:].]+ [^[:space:]\x22]*"),
            (
                r"(?P<host>\S+):\d{1,5} <HOST> (?:a|\d)",
                r"(?P<host>[[:^space:]]+):[[:digit:]]{1,5} <HOST> (?:a|[[:digit:]])",
            ),
            (r"\p{Nd}+ \. \\d", r"\p{Nd}+ \. \\d"),
        ] {
            assert_eq!(perl_classes(written), rewritten, "{written}");
        }
        assert_eq!(
            perl_classes("(unclosed"),
            "(unclosed",
            "left for the compiler to report"
        );
    }

    #[test]
    fn only_non_ascii_text_is_read_differently() {
        for (written, text) in [(r"^\d+$", "0123456789"), (r"^\s\w+$", " a_Z9")] {
            let unicode = regex::Regex::new(written).expect("compiles");
            let ascii = regex::Regex::new(&perl_classes(written)).expect("compiles");
            assert!(unicode.is_match(text) && ascii.is_match(text), "{written}");
        }
        let ascii = regex::Regex::new(&perl_classes(r"^\d+$")).expect("compiles");
        assert!(
            !ascii.is_match("٣"),
            "an Arabic-Indic digit is no log's digit"
        );
        let asked = regex::Regex::new(&perl_classes(r"^\p{Nd}+$")).expect("compiles");
        assert!(asked.is_match("٣"), "unless the filter asks for it");
    }
}
