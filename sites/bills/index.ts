export { BillFile, issuedBillsDir, keepIssuedBill, keptBillsDir, readBillFiles, type BillProblem, type ReadBill } from './bill-files.ts';
