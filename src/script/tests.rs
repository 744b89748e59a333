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
