export {
  COLUMN_TYPES,
  type ColumnInfo,
  createTableSql,
  type EnsureEntityTablesResult,
  ensureEntityTables,
  introspectColumns,
  introspectTable,
  keyColumn,
  keyField,
  qualifiedTable,
  type TableColumns,
} from "./ddl.js";
export {
  type ColumnValues,
  deleteRow,
  type EntityRow,
  getRow,
  insertRow,
  listRows,
  updateRow,
  type WrittenRow,
} from "./rows.js";
