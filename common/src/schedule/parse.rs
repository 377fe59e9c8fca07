//! Reading a schedule's text: tokens, then a recursive-descent parser into
//! keys whose values are expression trees, every problem with its column.

use super::Key;
use super::expr::{Expr, FUNCTIONS, Op, Var};

/// Deepest nesting of parentheses, signs, powers and calls accepted: far
/// beyond a hand-written expression, and it keeps parsing and evaluation
/// from running out of stack on a hostile job file.
const MAX_NESTING: usize = 32;

/// What a schedule's text holds.
pub(super) enum Parsed {
    /// A plain, optionally signed number.
    Number(f64),
    /// Keys, their frames increasing.
    Keys(Vec<Key>),
}

/// Reads a schedule's `text`.
pub(super) fn parse(text: &str) -> Result<Parsed, Problem> {
    let tokens = tokenize(text)?;
    if let Some(value) = plain_number(&tokens)? {
        return Ok(Parsed::Number(value));
    }
    Parser::new(tokens).keys().map(Parsed::Keys)
}

/// A parse problem: 1-based column and message.
pub(super) type Problem = (usize, String);

/// One lexical token.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    /// A number literal, as written.
    Number(&'a str),
    /// A function, variable or constant name.
    Name(&'a str),
    /// `^` or `**`.
    Pow,
    /// One of `+ - * / % ( ) , :`.
    Punct(char),
    /// The end of the text.
    End,
}

/// A token and its 1-based column.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    /// What it is.
    tok: Tok<'a>,
    /// Where it starts.
    column: usize,
}

/// Splits `text` into tokens, ending with [`Tok::End`] one column past the
/// last character.
fn tokenize(text: &str) -> Result<Vec<Token<'_>>, Problem> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let is = |i: usize, f: fn(char) -> bool| chars.get(i).is_some_and(|&(_, c)| f(c));
    let digit = |c: char| c.is_ascii_digit();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&(start, c)) = chars.get(i) {
        let column = i + 1;
        let tok = if c.is_whitespace() {
            i += 1;
            continue;
        } else if digit(c) || (c == '.' && is(i + 1, digit)) {
            while is(i, digit) {
                i += 1;
            }
            if is(i, |c| c == '.') {
                i += 1;
                while is(i, digit) {
                    i += 1;
                }
            }
            // An exponent only when digits follow: `2e` is 2 then a name.
            if is(i, |c| c == 'e' || c == 'E') {
                let sign = usize::from(is(i + 1, |c| c == '+' || c == '-'));
                if is(i + 1 + sign, digit) {
                    i += 1 + sign;
                    while is(i, digit) {
                        i += 1;
                    }
                }
            }
            Tok::Number(&text[start..byte_at(i)])
        } else if c.is_ascii_alphabetic() || c == '_' {
            while is(i, |c| c.is_ascii_alphanumeric() || c == '_') {
                i += 1;
            }
            Tok::Name(&text[start..byte_at(i)])
        } else if c == '^' || (c == '*' && is(i + 1, |c| c == '*')) {
            i += if c == '^' { 1 } else { 2 };
            Tok::Pow
        } else if "+-*/%(),:".contains(c) {
            i += 1;
            Tok::Punct(c)
        } else {
            return Err((column, format!("unexpected character {c:?}")));
        };
        tokens.push(Token { tok, column });
    }
    tokens.push(Token {
        tok: Tok::End,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

/// The value of a schedule that is a plain, optionally signed number.
fn plain_number(tokens: &[Token<'_>]) -> Result<Option<f64>, Problem> {
    let toks: Vec<Tok<'_>> = tokens.iter().map(|t| t.tok).collect();
    let (sign, literal) = match toks.as_slice() {
        [Tok::End] => {
            return Err((
                1,
                "the schedule is empty: write a number or keys like 0:(1.0)".into(),
            ));
        }
        [Tok::Number(_), Tok::End] => (1.0, &tokens[0]),
        [Tok::Punct(s @ ('-' | '+')), Tok::Number(_), Tok::End] => {
            (if *s == '-' { -1.0 } else { 1.0 }, &tokens[1])
        }
        _ => return Ok(None),
    };
    Ok(Some(sign * number(literal)?))
}

/// A number literal's value; one too large for an f64 is refused here
/// rather than becoming infinity.
fn number(token: &Token<'_>) -> Result<f64, Problem> {
    let Tok::Number(text) = token.tok else {
        return Err((token.column, "expected a number".into()));
    };
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err((token.column, format!("number {text} is too large"))),
    }
}

/// A recursive-descent parser over the tokens of a keyframe schedule.
struct Parser<'a> {
    /// The tokens, ending with [`Tok::End`].
    tokens: Vec<Token<'a>>,
    /// Index of the next token.
    pos: usize,
    /// Current nesting, against [`MAX_NESTING`].
    depth: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the first of `tokens`.
    fn new(tokens: Vec<Token<'a>>) -> Self {
        Self {
            tokens,
            pos: 0,
            depth: 0,
        }
    }

    /// The next token, not consumed ([`Tok::End`] stays put).
    fn peek(&self) -> Token<'a> {
        self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    /// Consumes and returns the next token.
    fn bump(&mut self) -> Token<'a> {
        let token = self.peek();
        self.pos += 1;
        token
    }

    /// Consumes `c` if it comes next.
    fn eat(&mut self, c: char) -> bool {
        let found = self.peek().tok == Tok::Punct(c);
        if found {
            self.pos += 1;
        }
        found
    }

    /// Consumes `c`, or fails at the next token with `expected`.
    fn expect(&mut self, c: char, expected: impl FnOnce() -> String) -> Result<(), Problem> {
        if self.eat(c) {
            Ok(())
        } else {
            Err((self.peek().column, expected()))
        }
    }

    /// `key:(value), key:(value), …` with an optional trailing comma.
    fn keys(mut self) -> Result<Vec<Key>, Problem> {
        let mut keys: Vec<Key> = Vec::new();
        loop {
            let token = self.bump();
            let Tok::Number(text) = token.tok else {
                return Err((
                    token.column,
                    "expected a key: a frame number like 0 or 120".into(),
                ));
            };
            self.expect(':', || format!("expected ':' after key {text}"))?;
            let frame = key_frame(text).map_err(|problem| (token.column, problem))?;
            if let Some(last) = keys.last() {
                if frame == last.frame {
                    return Err((token.column, format!("key {frame} appears twice")));
                }
                if frame < last.frame {
                    let problem = format!("keys must increase: {frame} after {}", last.frame);
                    return Err((token.column, problem));
                }
            }
            self.expect('(', || {
                format!("expected '(' before the value of key {frame}")
            })?;
            let value = self.expr()?;
            self.expect(')', || {
                format!("expected ')' after the value of key {frame}")
            })?;
            keys.push(Key {
                frame,
                value: value.folded(),
            });
            let after = self.bump();
            match after.tok {
                Tok::End => return Ok(keys),
                Tok::Punct(',') if self.peek().tok == Tok::End => return Ok(keys),
                Tok::Punct(',') => {}
                _ => {
                    let problem = format!("expected ',' or the end after the value of key {frame}");
                    return Err((after.column, problem));
                }
            }
        }
    }

    /// Terms joined by `+` and `-`.
    fn expr(&mut self) -> Result<Expr, Problem> {
        self.joined(Self::term, |c| match c {
            '+' => Some(Op::Add),
            '-' => Some(Op::Sub),
            _ => None,
        })
    }

    /// Factors joined by `*`, `/` and `%`.
    fn term(&mut self) -> Result<Expr, Problem> {
        self.joined(Self::unary, |c| match c {
            '*' => Some(Op::Mul),
            '/' => Some(Op::Div),
            '%' => Some(Op::Rem),
            _ => None,
        })
    }

    /// Operands read by `operand`, joined left to right by the operators
    /// `op_of` names: one level of precedence.
    fn joined(
        &mut self,
        operand: fn(&mut Self) -> Result<Expr, Problem>,
        op_of: fn(char) -> Option<Op>,
    ) -> Result<Expr, Problem> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        while let Tok::Punct(c) = self.peek().tok
            && let Some(op) = op_of(c)
        {
            self.pos += 1;
            rest.push((op, operand(self)?));
        }
        Ok(Expr::chain(first, rest))
    }

    /// A signed power. Every recursion passes through here, so this is
    /// where nesting is counted.
    fn unary(&mut self) -> Result<Expr, Problem> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            let problem = format!("nested too deeply (more than {MAX_NESTING} levels)");
            return Err((self.peek().column, problem));
        }
        let expr = if self.eat('-') {
            self.unary().map(|e| Expr::Neg(Box::new(e)))
        } else if self.eat('+') {
            self.unary()
        } else {
            self.power()
        };
        self.depth -= 1;
        expr
    }

    /// `base ^ exponent`, right-associative, binding tighter than a sign on
    /// its left (`-2^2` is -4) as in Python, whose syntax Deforum's are.
    fn power(&mut self) -> Result<Expr, Problem> {
        let base = self.primary()?;
        if self.peek().tok != Tok::Pow {
            return Ok(base);
        }
        self.pos += 1;
        let exponent = self.unary()?;
        Ok(Expr::Pow(Box::new(base), Box::new(exponent)))
    }

    /// A number, a name, a call or a parenthesised expression.
    fn primary(&mut self) -> Result<Expr, Problem> {
        let token = self.bump();
        match token.tok {
            Tok::Number(_) => number(&token).map(Expr::Number),
            Tok::Name(name) if self.peek().tok == Tok::Punct('(') => self.call(name, token.column),
            Tok::Name(name) => variable(name).map_err(|problem| (token.column, problem)),
            Tok::Punct('(') => {
                let inner = self.expr()?;
                self.expect(')', || {
                    format!("expected ')' to close the '(' at column {}", token.column)
                })?;
                Ok(inner)
            }
            _ => Err((
                token.column,
                "expected a number, t, max_f, a function or '('".into(),
            )),
        }
    }

    /// `name(arg, …)`, the '(' next.
    fn call(&mut self, name: &str, column: usize) -> Result<Expr, Problem> {
        let Some(&(_, func, arity)) = FUNCTIONS.iter().find(|(n, _, _)| *n == name) else {
            return Err((column, format!("unknown function {name:?}")));
        };
        self.pos += 1;
        let mut args = Vec::new();
        if !self.eat(')') {
            loop {
                args.push(self.expr()?);
                if self.eat(')') {
                    break;
                }
                self.expect(',', || {
                    format!("expected ',' or ')' in the arguments of {name}")
                })?;
            }
        }
        if args.len() != arity {
            let s = if arity == 1 { "" } else { "s" };
            let problem = format!("{name} takes {arity} argument{s}, not {}", args.len());
            return Err((column, problem));
        }
        Ok(Expr::Call(func, args))
    }
}

/// A key's frame number from its literal.
fn key_frame(text: &str) -> Result<u64, String> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("key {text} is not a whole frame number"));
    }
    text.parse().map_err(|_| format!("key {text} is too large"))
}

/// A variable or constant by name.
fn variable(name: &str) -> Result<Expr, String> {
    match name {
        "t" => Ok(Expr::Var(Var::T)),
        "max_f" => Ok(Expr::Var(Var::MaxF)),
        "pi" => Ok(Expr::Number(std::f64::consts::PI)),
        "e" => Ok(Expr::Number(std::f64::consts::E)),
        _ if FUNCTIONS.iter().any(|(n, _, _)| *n == name) => {
            Err(format!("{name:?} is a function: write {name}(…)"))
        }
        _ => Err(format!("unknown variable {name:?} (use t or max_f)")),
    }
}
