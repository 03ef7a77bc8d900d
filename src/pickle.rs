//! A restricted reader of Python pickles (protocols 2 to 5, the binary opcodes `torch.save`
//! writes): it builds a tree of plain values and never runs anything. A GLOBAL is kept as
//! its name; a call (REDUCE, NEWOBJ) as an [`Value::Object`] holding the callee's name and
//! its arguments, for the caller to interpret (a tensor is the call
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`). The one call
//! acted on is `collections.OrderedDict()`, which becomes a dictionary, so that the items
//! SETITEMS adds to it land in order.
//!
//! Input is untrusted: every length is checked against the bytes left, the memo and the
//! stack are bounded by the pickle's size, and a malformed pickle is an error, never a panic.
use std::collections::HashMap;

/// A value of the pickle.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond i64 (LONG1/LONG4), not kept.
    BigInt,
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    /// A global (a class or function), by its dotted name `module.name`: never imported.
    Global(String),
    /// A persistent id (BINPERSID): in `torch.save`'s files, a storage reference.
    Persistent(Box<Value>),
    /// The result of calling `callee` with `args` (REDUCE, NEWOBJ), which is not run; `state`
    /// is what BUILD gave it (an object's `__dict__`: a module's `_parameters`, `_modules`...).
    Object { callee: String, args: Vec<Value>, state: Option<Box<Value>> },
}

/// A dictionary in insertion order. A key set twice keeps its first place and its last
/// value, as in Python.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dict {
    pub items: Vec<(Value, Value)>,
    index: HashMap<String, usize>,
}

impl Dict {
    pub fn insert(&mut self, key: Value, value: Value) {
        if let Value::Str(s) = &key {
            if let Some(&i) = self.index.get(s) {
                self.items[i].1 = value;
                return;
            }
            self.index.insert(s.clone(), self.items.len());
        }
        self.items.push((key, value));
    }

    /// The value under the string key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.items[i].1)
    }
}

/// An entry of the stack: a value or a MARK.
enum Slot {
    Mark,
    V(Value),
}

/// Reads one pickle (up to STOP).
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    Parser { bytes, pos: 0, stack: Vec::new(), memo: HashMap::new() }.run()
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
}

impl<'a> Parser<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| format!("cut short at byte {} (wanted {n} more bytes)", self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn len(&mut self, n: u64) -> Result<usize, String> {
        usize::try_from(n).ok().filter(|&n| n <= self.bytes.len() - self.pos).ok_or_else(|| format!("a length of {n} bytes at byte {} runs past the end", self.pos))
    }

    fn string(&mut self, n: u64) -> Result<Value, String> {
        let n = self.len(n)?;
        let at = self.pos;
        let s = self.take(n)?;
        Ok(Value::Str(std::str::from_utf8(s).map_err(|_| format!("a string at byte {at} is not UTF-8"))?.to_string()))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("a GLOBAL name without its end of line")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "a GLOBAL name that is not UTF-8")?.to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Slot::V(v));
    }

    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(Slot::V(v)) => Ok(v),
            Some(Slot::Mark) => Err(format!("a MARK where a value was expected (byte {})", self.pos)),
            None => Err(format!("the stack is empty where a value was expected (byte {})", self.pos)),
        }
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        match self.stack.last_mut() {
            Some(Slot::V(v)) => Ok(v),
            _ => Err(format!("no value on the stack at byte {}", self.pos)),
        }
    }

    /// The values above the topmost MARK, which is removed.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)).ok_or_else(|| format!("no MARK on the stack (byte {})", self.pos))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items.into_iter().map(|s| if let Slot::V(v) = s { v } else { unreachable!("only the topmost MARK is above") }).collect())
    }

    fn memo_put(&mut self, key: u32) -> Result<(), String> {
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), String> {
        let v = self.memo.get(&key).cloned().ok_or_else(|| format!("memo entry {key} is used before it is set"))?;
        self.push(v);
        Ok(())
    }

    fn call(&mut self, callee: Value, args: Vec<Value>) -> Result<(), String> {
        let Value::Global(callee) = callee else { return Err(format!("a call of something that is no global (byte {})", self.pos)) };
        if callee == "collections.OrderedDict" && args.is_empty() {
            self.push(Value::Dict(Dict::default()));
        } else {
            self.push(Value::Object { callee, args, state: None });
        }
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        if items.len() % 2 != 0 {
            return Err("SETITEMS with an odd number of values".into());
        }
        let Value::Dict(d) = self.top()? else { return Err("SETITEM(S) on a value that is not a dictionary".into()) };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.insert(k, v);
        }
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.u64()?; // FRAME length: the frame's bytes follow inline
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Slot::Mark),
                b'}' => self.push(Value::Dict(Dict::default())),
                b']' => self.push(Value::List(Vec::new())),
                b')' => self.push(Value::Tuple(Vec::new())),
                0x8f => self.push(Value::List(Vec::new())), // EMPTY_SET, kept as a list
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.push(Value::Int(v as i64))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().unwrap());
                    self.push(Value::Int(v as i64))
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as u64 } else { self.u32()? as u64 };
                    let n = self.len(n)?;
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                        let mut w = [fill; 8];
                        w[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(w))
                    } else {
                        Value::BigInt
                    };
                    self.push(v)
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v))
                }
                b'X' => {
                    let n = self.u32()? as u64;
                    let v = self.string(n)?;
                    self.push(v)
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let v = self.string(n)?;
                    self.push(v)
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.string(n)?;
                    self.push(v)
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len(n)?;
                    let v = self.take(n)?.to_vec();
                    self.push(Value::Bytes(v))
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(format!("{module}.{name}")))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(format!("{m}.{n}"))),
                        _ => return Err(format!("STACK_GLOBAL without two strings (byte {at})")),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Dict::default()));
                    self.set_items(items)?
                }
                b'Q' => {
                    let id = self.pop()?;
                    self.push(Value::Persistent(Box::new(id)))
                }
                b'R' => {
                    let args = self.pop()?;
                    let callee = self.pop()?;
                    let Value::Tuple(args) = args else { return Err(format!("REDUCE without an argument tuple (byte {at})")) };
                    self.call(callee, args)?
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let Value::Tuple(args) = args else { return Err(format!("NEWOBJ without an argument tuple (byte {at})")) };
                    self.call(class, args)?
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let Value::Tuple(args) = args else { return Err(format!("NEWOBJ_EX without an argument tuple (byte {at})")) };
                    self.call(class, args)?
                }
                b'b' => {
                    let state = self.pop()?;
                    match self.top()? {
                        Value::Object { state: s, .. } => *s = Some(Box::new(state)),
                        // An OrderedDict's own attributes (a state_dict's `_metadata`): not kept.
                        Value::Dict(_) => {}
                        _ => return Err(format!("BUILD on a value that is no object (byte {at})")),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                b'a' | b'e' | 0x90 => {
                    let items = if op == b'a' { vec![self.pop()?] } else { self.pop_mark()? };
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(format!("APPEND(S) on a value that is no list (byte {at})")),
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {at}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_garbage_pickles_are_errors() {
        assert!(parse(b"").is_err());
        assert!(parse(b"\x80\x02}q\x00(X\xff\xff\xff\xff").is_err());
        assert!(parse(b"\x80\x02h\x05.").is_err());
        assert!(parse(b"\x80\x02u.").is_err());
    }

    #[test]
    fn a_dict_keeps_the_first_place_and_last_value_of_a_key() {
        // {"a": 1, "b": 2, "a": 3} as SETITEMS
        let v = parse(b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02X\x01\x00\x00\x00aK\x03u.").unwrap();
        let Value::Dict(d) = v else { panic!("{v:?}") };
        assert_eq!(d.items, vec![(Value::Str("a".into()), Value::Int(3)), (Value::Str("b".into()), Value::Int(2))]);
    }
}
