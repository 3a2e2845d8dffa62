//! The `esi:when test="…"` expression language (ESI 1.0 §3.3).
//!
//! Operands are variables, `'strings'` and numbers; operators `==` `!=` `<` `<=` `>` `>=`,
//! `!` (not), `&` (and), `|` (or) and parentheses. Two operands that both read as numbers
//! (quoted or not) compare as numbers, otherwise as strings. A lone operand is true unless it is empty,
//! `false` or zero. An expression that cannot be parsed is false (and noted as a warning), as is
//! one longer than 4 KiB or with more than 64 `&` and `|`.

use super::vars::{Escape, Interp, Piece, VarSource};

/// A parsed test.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Logical or.
    Or(Box<Expr>, Box<Expr>),
    /// Logical and.
    And(Box<Expr>, Box<Expr>),
    /// Logical not.
    Not(Box<Expr>),
    /// A comparison.
    Cmp(Operand, Op, Operand),
    /// A lone operand, read as a truth value.
    Truthy(Operand),
    /// Could not be parsed: always false.
    Invalid,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A value in an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A quoted string.
    Str(String),
    /// A number.
    Num(f64),
    /// A variable reference.
    Var(Interp),
}

/// Deepest nesting of parentheses and `!` accepted: bounds the recursion.
const MAX_DEPTH: usize = 32;
/// Most `&` and `|` in one test. Each nests the tree a level deeper, and evaluating or
/// dropping it recurses that deep: `1|1|…|1` from an origin must not overflow the stack.
const MAX_OPERATORS: usize = 64;
/// Longest test accepted, in bytes: far beyond any real one, and it bounds the work.
const MAX_LEN: usize = 4096;

impl Expr {
    /// Parses a test; anything malformed is [`Expr::Invalid`].
    pub fn parse(text: &str) -> Expr {
        if text.len() > MAX_LEN {
            return Expr::Invalid;
        }
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
            operators: 0,
        };
        match p.or() {
            Some(e) if p.at_end() => e,
            _ => Expr::Invalid,
        }
    }

    /// Evaluates the test for a request.
    pub fn eval(&self, src: &VarSource) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(src) || b.eval(src),
            Expr::And(a, b) => a.eval(src) && b.eval(src),
            Expr::Not(a) => !a.eval(src),
            Expr::Truthy(o) => {
                let v = o.value(src);
                !(v.is_empty() || v == "false" || v.parse::<f64>().is_ok_and(|n| n == 0.0))
            }
            Expr::Cmp(a, op, b) => {
                let (a, b) = (a.value(src), b.value(src));
                let ord = match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.partial_cmp(&y),
                    _ => Some(a.cmp(&b)),
                };
                let Some(ord) = ord else { return false };
                match op {
                    Op::Eq => ord.is_eq(),
                    Op::Ne => !ord.is_eq(),
                    Op::Lt => ord.is_lt(),
                    Op::Le => ord.is_le(),
                    Op::Gt => ord.is_gt(),
                    Op::Ge => ord.is_ge(),
                }
            }
            Expr::Invalid => false,
        }
    }
}

impl Operand {
    fn value(&self, src: &VarSource) -> String {
        match self {
            Operand::Str(s) => s.clone(),
            Operand::Num(n) => n.to_string(),
            Operand::Var(i) => i.render(src, Escape::None),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
    operators: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.s.len()
    }

    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(t.as_bytes()) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Option<Expr> {
        let mut e = self.and()?;
        while self.eat("|") {
            self.operator()?;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Some(e)
    }

    fn and(&mut self) -> Option<Expr> {
        let mut e = self.not()?;
        while self.eat("&") {
            self.operator()?;
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Some(e)
    }

    /// Counts a binary operator; `None` past [`MAX_OPERATORS`].
    fn operator(&mut self) -> Option<()> {
        self.operators += 1;
        (self.operators <= MAX_OPERATORS).then_some(())
    }

    fn not(&mut self) -> Option<Expr> {
        self.ws();
        // `!=` is a comparison, not a negation.
        if self.s[self.i..].starts_with(b"!") && !self.s[self.i..].starts_with(b"!=") {
            self.i += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return None;
            }
            let e = self.not()?;
            self.depth -= 1;
            return Some(Expr::Not(Box::new(e)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Option<Expr> {
        if self.eat("(") {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return None;
            }
            let e = self.or()?;
            self.depth -= 1;
            return self.eat(")").then_some(e);
        }
        let a = self.operand()?;
        for (t, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.eat(t) {
                return Some(Expr::Cmp(a, op, self.operand()?));
            }
        }
        Some(Expr::Truthy(a))
    }

    fn operand(&mut self) -> Option<Operand> {
        self.ws();
        let rest = std::str::from_utf8(&self.s[self.i..]).ok()?;
        if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'')?;
            self.i += end + 2;
            return Some(Operand::Str(r[..end].to_owned()));
        }
        if rest.starts_with("$(") {
            let end = rest.find(')')? + 1;
            let interp = Interp::parse(&rest[..end]);
            if !matches!(interp.0.as_slice(), [Piece::Var { .. }]) {
                return None;
            }
            self.i += end;
            return Some(Operand::Var(interp));
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..len].parse().ok()?;
        self.i += len;
        Some(Operand::Num(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn eval(test: &str, cookie: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert("cookie", cookie.parse().unwrap());
        let src = VarSource {
            headers: &h,
            query: Some("page=3"),
            host: "shop.test",
        };
        Expr::parse(test).eval(&src)
    }

    #[test]
    fn comparisons_logic_and_grouping_esi_3_3() {
        assert!(eval("$(HTTP_COOKIE{group})=='gold'", "group=gold"));
        assert!(!eval("$(HTTP_COOKIE{group})=='gold'", "group=silver"));
        assert!(eval("$(HTTP_COOKIE{group}) != 'gold'", "group=silver"));
        assert!(eval(
            "$(QUERY_STRING{page}) > 2 & $(QUERY_STRING{page}) <= 3",
            ""
        ));
        assert!(eval(
            "!($(HTTP_COOKIE{a})=='1') | $(HTTP_COOKIE{b})=='2'",
            "a=1; b=2"
        ));
        assert!(!eval("!($(HTTP_COOKIE{a})=='1')", "a=1"));
        assert!(eval("$(HTTP_COOKIE{a})", "a=yes"));
        assert!(!eval("$(HTTP_COOKIE{a})", "a=false"));
        assert!(eval("10 > 9", ""), "numbers compare as numbers");
        assert!(eval("'10' > '9'", ""), "so do strings that read as numbers");
        assert!(
            eval("'abc' < 'abd'", ""),
            "other strings compare as strings"
        );
    }

    #[test]
    fn malformed_tests_are_false_never_a_panic() {
        for t in [
            "", "(", "((((", "'open", "$(A", "1 ==", "== 1", "a b", "!", "&", "1 & & 2",
        ] {
            assert_eq!(Expr::parse(t), Expr::Invalid, "{t}");
            assert!(!eval(t, ""), "{t}");
        }
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(Expr::parse(&deep), Expr::Invalid);
        let nots = format!("{}1", "!".repeat(500));
        assert_eq!(Expr::parse(&nots), Expr::Invalid);
    }

    #[test]
    fn a_long_chain_of_operators_is_refused_not_a_stack_overflow() {
        // Left-nested: without a bound, 100,000 operators nest the tree 100,000 deep, and
        // evaluating or dropping it overflows the stack (the process aborts).
        for op in ["|", "&"] {
            let chain = format!("{}1", format!("1{op}").repeat(100_000));
            assert_eq!(Expr::parse(&chain), Expr::Invalid, "{op}");
            let short = format!("{}1", format!("1{op}").repeat(MAX_OPERATORS));
            assert!(eval(&short, ""), "{op}: {MAX_OPERATORS} operators are fine");
            let over = format!("{}1", format!("1{op}").repeat(MAX_OPERATORS + 1));
            assert_eq!(Expr::parse(&over), Expr::Invalid, "{op}");
        }
        let long = format!("'{}' == 'a'", "a".repeat(MAX_LEN));
        assert_eq!(Expr::parse(&long), Expr::Invalid);
    }
}
