# The tokenizer's own system packages: ICU for Unicode general categories and NFC (libicu-dev).
find_package(ICU REQUIRED COMPONENTS uc)
target_link_libraries(dg_tokenizer PUBLIC ICU::uc)
target_link_libraries(dg_tokenizer PUBLIC absl::flat_hash_map absl::hash)
