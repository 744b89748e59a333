use super::call::format_g17;

#[test]
fn numbers_format_as_redis_passes_them_to_commands() {
    assert_eq!(format_g17(9007199254740991.0), "9007199254740991");
    assert_eq!(format_g17(0.1), "0.10000000000000001");
    assert_eq!(format_g17(1.5), "1.5");
    assert_eq!(format_g17(-3.0), "-3");
    assert_eq!(format_g17(1e20), "1e+20");
    assert_eq!(format_g17(1e-5), "1.0000000000000001e-05");
}

mod conversions {
    use bytes::Bytes;
    use mlua::{Lua, Value};

    use crate::resp::Reply;
    use crate::script::convert::{lua_to_outcome, reply_to_lua};
    use crate::state::{Outcome, StateError};

    fn eval(lua: &Lua, code: &str) -> Value {
        lua.load(code).eval().unwrap()
    }

    fn outcome(code: &str) -> Result<Outcome, StateError> {
        let lua = Lua::new();
        lua_to_outcome(&eval(&lua, code), false, 0)
    }

    #[test]
    fn lua_values_become_redis_replies() {
        assert_eq!(outcome("return 100.9"), Ok(Outcome::Int(100)));
        assert_eq!(outcome("return -2.5"), Ok(Outcome::Int(-2)));
        assert_eq!(outcome("return true"), Ok(Outcome::Int(1)));
        assert_eq!(outcome("return false"), Ok(Outcome::Nil));
        assert_eq!(outcome("return nil"), Ok(Outcome::Nil));
        assert_eq!(outcome("return 'x'"), Ok(Outcome::Bulk(Bytes::from("x"))));
        assert_eq!(
            outcome("return {ok='fine\\r\\nline'}"),
            Ok(Outcome::Status("fine  line".into()))
        );
        assert_eq!(
            outcome("return {err='CODE text'}"),
            Err(StateError::Script("CODE text".into()))
        );
        // Arrays stop at the first nil; false inside is a nil element.
        assert_eq!(
            outcome("return {1, false, 'a', nil, 5}"),
            Ok(Outcome::Array(vec![
                Outcome::Int(1),
                Outcome::Nil,
                Outcome::Bulk(Bytes::from("a"))
            ]))
        );
        assert_eq!(
            outcome("return {1, {err='E inner'}}"),
            Ok(Outcome::Array(vec![
                Outcome::Int(1),
                Outcome::Error(StateError::Script("E inner".into()))
            ]))
        );
        // Metatables are not consulted.
        assert_eq!(
            outcome("local t = setmetatable({}, {__index=function() return 1 end}) return t"),
            Ok(Outcome::Array(vec![]))
        );
        assert_eq!(outcome("return {double=1.5}"), Ok(Outcome::Double(1.5)));
        assert_eq!(
            outcome("return {map={a=1}}"),
            Ok(Outcome::Map(vec![(
                Outcome::Bulk(Bytes::from("a")),
                Outcome::Int(1)
            )]))
        );
    }

    #[test]
    fn a_recursive_table_ends_at_the_stack_limit() {
        let result = outcome("local a = {} local b = {a} a[1] = b return a");
        let mut depth = 0;
        let mut item = result.expect("an array");
        while let Outcome::Array(mut items) = item {
            depth += 1;
            item = items.pop().expect("one element");
        }
        assert_eq!(
            item,
            Outcome::Error(StateError::Script("ERR reached lua stack limit".into()))
        );
        assert!(depth > 10);
    }

    #[test]
    fn redis_replies_become_lua_values() {
        let lua = Lua::new();
        let check = |reply: Reply, resp3: bool, expect: &str| {
            let value = reply_to_lua(&lua, reply, resp3).unwrap();
            lua.globals().set("v", value).unwrap();
            let ok: bool = lua.load(expect).eval().unwrap();
            assert!(ok, "{expect}");
        };
        check(Reply::Int(3), false, "return v == 3");
        check(Reply::bulk("x"), false, "return v == 'x'");
        check(Reply::Nil, false, "return v == false");
        check(Reply::Nil, true, "return v == nil");
        check(Reply::ok(), false, "return v.ok == 'OK'");
        check(Reply::error("ERR bad"), false, "return v.err == 'ERR bad'");
        check(
            Reply::Array(vec![Reply::Int(1), Reply::Nil, Reply::bulk("b")]),
            false,
            "return v[1] == 1 and v[2] == false and v[3] == 'b'",
        );
        let map = || Reply::Map(vec![(Reply::bulk("f"), Reply::bulk("v"))]);
        check(map(), false, "return v[1] == 'f' and v[2] == 'v'");
        check(map(), true, "return v.map.f == 'v'");
        check(Reply::Double(1.5), false, "return v == '1.5'");
        check(Reply::Double(1.5), true, "return v.double == 1.5");
        check(Reply::Bool(true), false, "return v == 1");
        check(Reply::Bool(true), true, "return v == true");
        check(
            Reply::Set(vec![Reply::bulk("m")]),
            true,
            "return v.set.m == true",
        );
    }
}

mod msgpack {
    use mlua::{Lua, Value};

    use crate::script::msgpack::{table, MAX_DECODE_DEPTH};

    fn lua() -> Lua {
        let lua = Lua::new();
        lua.globals().set("cmsgpack", table(&lua).unwrap()).unwrap();
        lua
    }

    /// The hex of what `cmsgpack.pack(<args>)` makes.
    fn packed(lua: &Lua, args: &str) -> String {
        let bytes: mlua::String = lua
            .load(format!("return cmsgpack.pack({args})"))
            .eval()
            .unwrap();
        bytes
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn error_of(lua: &Lua, code: &str) -> String {
        lua.load(code).exec().unwrap_err().to_string()
    }

    #[test]
    fn packs_as_redis_does() {
        let lua = lua();
        // Redis 7.0's own expectations (unit/scripting).
        assert_eq!(packed(&lua, "0.1"), "cb3fb999999999999a");
        assert_eq!(packed(&lua, "-1099511627776"), "d3ffffff0000000000");
        // Each integer form at its edges.
        for (value, hex) in [
            ("0", "00"),
            ("127", "7f"),
            ("128", "cc80"),
            ("255", "ccff"),
            ("256", "cd0100"),
            ("65536", "ce00010000"),
            ("4294967296", "cf0000000100000000"),
            ("-1", "ff"),
            ("-32", "e0"),
            ("-33", "d0df"),
            ("-129", "d1ff7f"),
            ("-32769", "d2ffff7fff"),
            ("-3147483648", "d3ffffffff44653600"),
            ("1.5", "ca3fc00000"),
            ("2^63", "ca5f000000"),
            ("true, false, nil", "c3c2c0"),
            ("'abc'", "a3616263"),
            ("{}", "90"),
            ("{1, 2}", "920102"),
            ("{a = 1}", "81a16101"),
            // Keys not exactly 1..n make a map.
            ("{[2] = 1}", "810201"),
            ("print", "c0"),
        ] {
            assert_eq!(packed(&lua, value), hex, "{value}");
        }
        assert_eq!(&packed(&lua, "string.rep('x', 32)")[..4], "d920");
        assert_eq!(&packed(&lua, "string.rep('x', 256)")[..6], "da0100");
        assert_eq!(&packed(&lua, "string.rep('x', 65536)")[..10], "db00010000");
        let sixteen: String = (1..=16).map(|i| format!("{i},")).collect();
        assert_eq!(&packed(&lua, &format!("{{{sixteen}}}"))[..6], "dc0010");
        assert!(error_of(&lua, "cmsgpack.pack()").contains("MessagePack pack needs input."));
    }

    #[test]
    fn a_table_that_holds_itself_is_packed_sixteen_deep() {
        let lua = lua();
        lua.load("t = {} t.t = t").exec().unwrap();
        let hex = packed(&lua, "t");
        assert_eq!(hex, format!("{}c0", "81a174".repeat(16)));
        let depth: i64 = lua
            .load("local u, n = cmsgpack.unpack(cmsgpack.pack(t)), 0 while u do n = n + 1 u = u.t end return n")
            .eval()
            .unwrap();
        assert_eq!(depth, 16);
    }

    #[test]
    fn unpacks_what_it_packs_and_walks_a_stream() {
        let lua = lua();
        let ok: bool = lua
            .load(
                r#"
                local big, names = {}, {}
                for i = 1, 70000 do big[i] = i names["k" .. i] = "v" .. i end
                local n = cmsgpack.unpack(cmsgpack.pack(names))
                assert(n.k1 == "v1" and n.k70000 == "v70000")
                local v = {s = string.rep("y", 300), n = -7.25, i = 2^40, a = {1, "two", {3}},
                           t = true, f = false, big = big}
                local d = cmsgpack.unpack(cmsgpack.pack(v))
                assert(d.s == v.s and d.n == v.n and d.i == v.i and d.t == true and d.f == false)
                assert(d.a[1] == 1 and d.a[2] == "two" and d.a[3][1] == 3)
                assert(#d.big == 70000 and d.big[70000] == 70000)
                local s = cmsgpack.pack("a", 2, "c")
                local x, y, z = cmsgpack.unpack(s)
                assert(x == "a" and y == 2 and z == "c")
                local off, one = cmsgpack.unpack_one(s)
                assert(off == 2 and one == "a")
                local off2, two, three = cmsgpack.unpack_limit(s, 2, off)
                assert(off2 == -1 and two == 2 and three == "c")
                local only_offset = {cmsgpack.unpack_limit(s, 0, 1)}
                assert(#only_offset == 1 and only_offset[1] == 1)
                return true
                "#,
            )
            .eval()
            .unwrap();
        assert!(ok);
    }

    #[test]
    fn bad_input_is_an_error_never_a_crash() {
        let lua = lua();
        let unpack = |hex: &str| {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            lua.globals()
                .set("data", lua.create_string(&bytes).unwrap())
                .unwrap();
            lua.load("return cmsgpack.unpack(data)")
                .eval::<mlua::MultiValue>()
                .map_err(|e| e.to_string())
        };
        // Truncated forms, and lengths the data cannot hold: nothing is
        // allocated for a declared 4 billion entries.
        for hex in [
            "cd01",
            "a5616263",
            "dbffffffff",
            "ddffffffff01",
            "dfffffffff",
            "92",
        ] {
            let err = unpack(hex).unwrap_err();
            assert!(err.contains("Missing bytes in input."), "{hex}: {err}");
        }
        // bin and ext types are not lua-cmsgpack's.
        for hex in ["c40161", "d40100", "c1"] {
            let err = unpack(hex).unwrap_err();
            assert!(err.contains("Bad data format in input."), "{hex}: {err}");
        }
        // A nil key, as Lua refuses it.
        assert!(unpack("81c001").is_err());
        // Deep nesting ends in an error, not a stack overflow.
        let deep = format!("{}c0", "91".repeat(MAX_DECODE_DEPTH + 10));
        let err = unpack(&deep).unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
        assert!(unpack(&format!("{}c0", "91".repeat(MAX_DECODE_DEPTH))).is_ok());
        // Too many values for one return; strings (each a reference while
        // it is held) up to the bound are fine.
        let err = unpack(&"00".repeat(10_000)).unwrap_err();
        assert!(err.contains("use unpack_one or unpack_limit"), "{err}");
        let count = |n: usize| {
            lua.globals()
                .set("data", lua.create_string(vec![0xa0u8; n]).unwrap())
                .unwrap();
            lua.load("local t = {cmsgpack.unpack(data)} return #t")
                .eval::<i64>()
                .map_err(|e| e.to_string())
        };
        assert_eq!(count(4000), Ok(4000));
        assert!(count(4001)
            .unwrap_err()
            .contains("use unpack_one or unpack_limit"));
        let err = error_of(&lua, "cmsgpack.unpack_one('abc', 5)");
        assert!(
            err.contains("Start offset 5 greater than input length 3."),
            "{err}"
        );
        let err = error_of(&lua, "cmsgpack.unpack_limit('abc', -1)");
        assert!(err.contains("Invalid request to unpack"), "{err}");
        assert!(matches!(
            lua.load("return cmsgpack.unpack('')").eval::<Value>(),
            Ok(Value::Nil)
        ));
    }
}
