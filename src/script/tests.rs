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
